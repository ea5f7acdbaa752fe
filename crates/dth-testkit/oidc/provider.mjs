// A real OpenID Connect provider for Data Transfer Hub's tests: npm `oidc-provider` (pinned in
// package.json) on http://127.0.0.1:<port>, with its development login and consent forms.
//
//   node provider.mjs <config.json>        (or DTH_OIDC_CONFIG=<config.json> node provider.mjs)
//
// The config (written by dth-testkit's OidcProvider):
//   { "port": 12345,
//     "clients": [{ "client_id": "...", "client_secret": "...", "redirect_uris": ["http://..."] }],
//     "accounts": { "alice": { "email": "...", "email_verified": true, "name": "...", "groups": ["..."] } } }
//
// Any login the dev form is given signs in (any password); a login missing from `accounts` gets
// email = name = login, email_verified = true, groups = []. The claims email, email_verified,
// name and groups are put into the ID token as well (conformIdTokenClaims: false). Prints each
// start-up step with its time (`key ready in N ms`, `provider ready in N ms`), then
// `listening <issuer>` once it accepts connections, so a slow start says where it stood.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const configPath = process.argv[2] || process.env.DTH_OIDC_CONFIG;
if (!configPath) {
  console.error('usage: node provider.mjs <config.json> (or set DTH_OIDC_CONFIG)');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, 'utf8'));
const port = Number(config.port || process.env.DTH_OIDC_PORT);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`provider.mjs: no valid port in ${configPath} (or DTH_OIDC_PORT)`);
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const accounts = config.accounts || {};

const started = Date.now();
const step = (what) => console.log(`${what} in ${Date.now() - started} ms`);

// A fresh signing key per run, instead of the provider's (warned about) development keys.
const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  use: 'sig',
  alg: 'RS256',
  kid: randomBytes(8).toString('hex'),
};
step('key ready');

function claimsOf(login) {
  const known = Object.hasOwn(accounts, login) ? accounts[login] : undefined;
  return {
    sub: login,
    email: known?.email ?? login,
    email_verified: known?.email_verified ?? true,
    name: known?.name ?? login,
    groups: known?.groups ?? [],
  };
}

const provider = new Provider(issuer, {
  clients: (config.clients || []).map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    // oidc-provider accepts the secret in the Authorization header (client_secret_basic) and in
    // the form body (client_secret_post) for either registered method.
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  jwks: { keys: [signingKey] },
  cookies: {
    // Signed cookies; they are not `secure` on plain http (oidc-provider sets `secure` only when
    // the request came over https, or through a trusted proxy that says so).
    keys: [randomBytes(32).toString('hex')],
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  // Claims of the granted scopes go into the ID token too, not only to userinfo.
  conformIdTokenClaims: false,
  scopes: ['openid', 'email', 'profile', 'groups'],
  pkce: {
    // Checked whenever the client sends a code_challenge; S256 only.
    required: () => false,
  },
  features: {
    devInteractions: { enabled: true },
  },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return claimsOf(id);
      },
    };
  },
  async renderError(ctx, out, error) {
    ctx.type = 'json';
    ctx.body = out;
    console.error('provider.mjs: error page:', out, error?.message ?? '');
  },
});

step('provider ready');

provider.on('server_error', (_ctx, err) => console.error('provider.mjs: server_error', err));
provider.on('grant.error', (_ctx, err) => console.error('provider.mjs: grant.error', err.message));

const server = createServer(provider.callback());
server.on('error', (err) => {
  console.error(`provider.mjs: cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  step('listening');
  console.log(`listening ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
