//! The provider presets of the objects wizard: each is a [`Provider`] with the regions people pick
//! from (AWS is three presets, one per partition, since each partition has its own accounts and
//! keys), and the endpoint a side gets when the user gives none — read from the engine's own
//! provider profile ([`dth_s3::Profile::endpoint_for`]), so the hint is what a run will use.

use dth_model::Provider;
use dth_s3::Profile;

/// One choice of the provider select.
pub struct Preset {
    /// The select's value.
    pub id: &'static str,
    /// The provider it stands for.
    pub provider: Provider,
    /// Regions to pick from, the default first; empty: a free region input.
    pub regions: &'static [&'static str],
}

const AWS_COMMERCIAL: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "sa-east-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "me-south-1",
    "me-central-1",
    "il-central-1",
    "af-south-1",
    "ap-east-1",
    "ap-south-1",
    "ap-south-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
];

/// Every preset, in the order of the select.
pub const PRESETS: &[Preset] = &[
    Preset {
        id: "aws",
        provider: Provider::Aws,
        regions: AWS_COMMERCIAL,
    },
    Preset {
        id: "aws-cn",
        provider: Provider::Aws,
        regions: &["cn-north-1", "cn-northwest-1"],
    },
    Preset {
        id: "aws-gov",
        provider: Provider::Aws,
        regions: &["us-gov-west-1", "us-gov-east-1"],
    },
    Preset {
        id: "aliyun-oss",
        provider: Provider::AliyunOss,
        regions: &[
            "cn-hangzhou",
            "cn-shanghai",
            "cn-qingdao",
            "cn-beijing",
            "cn-zhangjiakou",
            "cn-huhehaote",
            "cn-wulanchabu",
            "cn-shenzhen",
            "cn-heyuan",
            "cn-guangzhou",
            "cn-chengdu",
            "cn-hongkong",
            "ap-southeast-1",
            "ap-southeast-3",
            "ap-southeast-5",
            "ap-northeast-1",
            "us-west-1",
            "us-east-1",
            "eu-central-1",
            "eu-west-1",
        ],
    },
    Preset {
        id: "tencent-cos",
        provider: Provider::TencentCos,
        regions: &[
            "ap-guangzhou",
            "ap-beijing",
            "ap-shanghai",
            "ap-nanjing",
            "ap-chengdu",
            "ap-chongqing",
            "ap-hongkong",
            "ap-singapore",
            "ap-jakarta",
            "ap-bangkok",
            "ap-seoul",
            "ap-tokyo",
            "na-siliconvalley",
            "na-ashburn",
            "sa-saopaulo",
            "eu-frankfurt",
        ],
    },
    Preset {
        id: "qiniu-kodo",
        provider: Provider::QiniuKodo,
        regions: &[
            "cn-east-1",
            "cn-east-2",
            "cn-north-1",
            "cn-south-1",
            "us-north-1",
            "ap-southeast-1",
            "ap-northeast-1",
        ],
    },
    Preset {
        id: "gcs",
        provider: Provider::Gcs,
        regions: &["auto"],
    },
    Preset {
        id: "minio",
        provider: Provider::Minio,
        regions: &[],
    },
    Preset {
        id: "ceph",
        provider: Provider::Ceph,
        regions: &[],
    },
    Preset {
        id: "other",
        provider: Provider::Other,
        regions: &[],
    },
];

/// Every AWS region of the three partitions (for ECR locations).
pub fn aws_regions() -> Vec<&'static str> {
    PRESETS
        .iter()
        .filter(|p| p.provider == Provider::Aws)
        .flat_map(|p| p.regions.iter().copied())
        .collect()
}

/// The preset of a select value; the first (AWS commercial) for anything else.
pub fn preset(id: &str) -> &'static Preset {
    PRESETS.iter().find(|p| p.id == id).unwrap_or(&PRESETS[0])
}

impl Preset {
    /// The region a side of this preset starts with.
    pub fn default_region(&self) -> &'static str {
        self.regions
            .first()
            .copied()
            .unwrap_or_else(|| Profile::for_provider(self.provider).default_region)
    }

    /// Whether the user must give the endpoint URL (self-hosted servers).
    pub fn needs_endpoint(&self) -> bool {
        Profile::for_provider(self.provider).needs_endpoint
    }

    /// The endpoint a run uses in `region` when the user gives none: the profile's URL pattern,
    /// or, where the profile leaves it to the AWS SDK, the SDK's regional S3 endpoint.
    pub fn derived_endpoint(&self, region: &str) -> Option<String> {
        let profile = Profile::for_provider(self.provider);
        if profile.needs_endpoint {
            return None;
        }
        profile.endpoint_for(region).or_else(|| {
            let domain = if region.starts_with("cn-") {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            Some(format!("https://s3.{region}.{domain}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_engine_profiles() {
        assert_eq!(
            preset("aliyun-oss").derived_endpoint("cn-beijing").unwrap(),
            "https://oss-cn-beijing.aliyuncs.com"
        );
        assert_eq!(
            preset("aws-cn").derived_endpoint("cn-north-1").unwrap(),
            "https://s3.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            preset("aws-gov").derived_endpoint("us-gov-west-1").unwrap(),
            "https://s3.us-gov-west-1.amazonaws.com"
        );
        assert_eq!(preset("minio").derived_endpoint("us-east-1"), None);
        assert!(preset("ceph").needs_endpoint() && !preset("gcs").needs_endpoint());
        assert_eq!(preset("minio").default_region(), "us-east-1");
        assert_eq!(preset("nope").id, "aws");
        assert!(
            aws_regions().contains(&"cn-northwest-1") && aws_regions().contains(&"us-gov-east-1")
        );
    }
}
