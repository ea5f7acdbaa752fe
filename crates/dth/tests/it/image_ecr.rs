//! ECR paths: moto_server answers the ECR API (GetAuthorizationToken, DescribeRepositories,
//! CreateRepository) and a docker-registry whose htpasswd holds moto's token serves the data.

use dth_testkit::{PeerKind, Registry, S3Peer, inspect_raw, tools_dir};

use crate::common::dth;
use crate::image_common::*;

/// moto's account and the password its GetAuthorizationToken hands out for it.
const ACCOUNT: &str = "123456789012";
const TOKEN_PASSWORD: &str = "123456789012-auth-token";

fn aws_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
}

/// Repository names in moto, read with boto3 (not our client).
async fn moto_repositories(moto: &S3Peer) -> Vec<String> {
    let py = tools_dir().join("venv/bin/python");
    let script = format!(
        "import boto3\nc=boto3.client('ecr',endpoint_url='{}',region_name='us-east-1',aws_access_key_id='t',aws_secret_access_key='t')\n\
         print('\\n'.join(sorted(r['repositoryName'] for r in c.describe_repositories()['repositories'])))",
        moto.endpoint_url()
    );
    let out = tokio::process::Command::new(py)
        .arg("-c")
        .arg(script)
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn to_ecr_with_repository_creation_then_from_ecr() {
    let moto = S3Peer::start(PeerKind::Moto).await;
    let src = Registry::start().await;
    let ecr_data = Registry::start_with_basic_auth("AWS", TOKEN_PASSWORD).await;
    let dir = tempfile::tempdir().unwrap();
    let (layout, images) = standard_fixture(dir.path());
    push_fixture(&layout, &images, &src).await;
    let env = aws_env();

    // Into ECR: repositories are created through the ECR API, data goes with the ECR token.
    let to_ecr = [
        "image",
        "sync",
        &format!("docker://{}", src.host()),
        &format!("ecr://{ACCOUNT}.us-east-1"),
        "--json",
        "--src-tls-verify=false",
        "--dst-tls-verify=false",
        "--dst-ecr-endpoint",
        &moto.endpoint_url(),
        "--dst-endpoint",
        &ecr_data.url(),
    ];
    let run = dth(&to_ecr, &env).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.n("copied"), 4);
    assert_eq!(
        moto_repositories(&moto).await,
        ["app-a", "app-b", "team/app-c"]
    );
    for img in &images {
        for tag in &img.tags {
            assert_same_image(&src, &ecr_data, &format!("{}:{tag}", img.repo)).await;
        }
    }
    // ECR's profile does not try mounts: every repository got its blobs by upload or HEAD.
    assert_eq!(run.summary()["destination_requests"]["mounts"], 0);
    let again = dth(&to_ecr, &env).await;
    assert_eq!(
        (again.code, again.n("unchanged")),
        (0, 4),
        "{}",
        again.stderr
    );

    // Out of ECR: the repository list comes from DescribeRepositories.
    let out = Registry::start().await;
    let run = dth(
        &[
            "image",
            "sync",
            &format!("ecr://{ACCOUNT}.us-east-1"),
            &format!("docker://{}/from-ecr", out.host()),
            "--json",
            "--src-tls-verify=false",
            "--dst-tls-verify=false",
            "--src-ecr-endpoint",
            &moto.endpoint_url(),
            "--src-endpoint",
            &ecr_data.url(),
        ],
        &env,
    )
    .await;
    assert_eq!((run.code, run.n("copied")), (0, 4), "{}", run.stderr);
    assert_eq!(
        inspect_raw(&src, "app-b:2.0").await,
        inspect_raw(&out, "from-ecr/app-b:2.0").await
    );

    // Without AWS credentials the ECR call fails with a clear message.
    let run = dth(
        &to_ecr,
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
        ],
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("GetAuthorizationToken"),
        "{}",
        run.stderr
    );
}
