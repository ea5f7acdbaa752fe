//! The hub's HTTP tests in one test binary (one link instead of nine): the API, access and
//! sign-in, OpenID Connect against a real provider, `/metrics`, and the portal's pages.

mod access;
mod api;
mod common;
mod events;
mod metrics;
mod oidc;
mod portal;
mod portal_admin;
mod portal_api;
mod portal_detail;
mod portal_wizard;
mod retention;
