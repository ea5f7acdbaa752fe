//! Provider quirks, in one table. This is the only module that looks at which provider an endpoint is:
//! everything else asks the [`Profile`] (cf. rclone's `backend/s3/provider/*.yaml`). An unknown server
//! (`other`) gets the cautious profile: path-style, checksums only when required, multipart ETags opaque.

use dth_model::Provider;

/// What a multipart upload's ETag means on a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtagKind {
    /// `hex(md5(md5(part1) ‖ … ‖ md5(partN)))-N`, so it can be recomputed from the part MD5s.
    Md5OfParts,
    /// Some other value; only per-part MD5s and the size can be checked.
    Opaque,
}

/// The behaviour of one provider that the engine must adapt to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The provider this profile describes.
    pub provider: Provider,
    /// Address buckets as `https://host/bucket/key` (true) or `https://bucket.host/key` (false).
    pub path_style: bool,
    /// Send and validate the SDK's CRC checksums only when an operation requires them (non-AWS servers
    /// reject the default CRC32 trailers).
    pub checksum_when_required: bool,
    /// Use ListObjects (v1) instead of ListObjectsV2.
    pub list_v1: bool,
    /// Ask for URL-encoded keys in listings (`encoding-type=url`), so that control characters survive XML.
    /// Off where unknown: some servers (s3s-fs 0.14) echo `EncodingType=url` without encoding, and then
    /// decoding would turn a literal `+` into a space.
    pub url_encoded_listing: bool,
    /// Meaning of a multipart upload's ETag.
    pub multipart_etag: EtagKind,
    /// Most parts in one multipart upload.
    pub max_parts: u64,
    /// Smallest part (except the last).
    pub min_part: u64,
    /// Largest part.
    pub max_part: u64,
    /// Whether `UploadPartCopy` works (server-side copy of parts).
    pub part_copy: bool,
    /// Region used when the user gives none.
    pub default_region: &'static str,
    /// Without `--*-region`, take the region from the AWS config chain (`AWS_REGION`, the profile) before
    /// falling back to `default_region`.
    pub region_from_aws_config: bool,
    /// The service has no public endpoint: the user must give the URL.
    pub needs_endpoint: bool,
    /// Storage classes whose objects must be restored before they can be read (compared ignoring case).
    pub archive_classes: &'static [&'static str],
    /// Largest object one `CopyObject` may copy; larger ones are copied with `UploadPartCopy`.
    pub copy_object_max: u64,
    /// Endpoint URL for a region, `{region}` replaced; `None` lets the SDK resolve it (AWS).
    pub endpoint_template: Option<&'static str>,
}

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

const CAUTIOUS: Profile = Profile {
    provider: Provider::Other,
    path_style: true,
    checksum_when_required: true,
    list_v1: false,
    url_encoded_listing: false,
    multipart_etag: EtagKind::Opaque,
    max_parts: 10_000,
    min_part: 5 * MIB,
    max_part: 5 * GIB,
    part_copy: false,
    default_region: "us-east-1",
    region_from_aws_config: false,
    needs_endpoint: true,
    copy_object_max: 5 * GIB,
    archive_classes: &["GLACIER", "DEEP_ARCHIVE"],
    endpoint_template: None,
};

/// The profiles, one per provider.
static PROFILES: [Profile; 8] = [
    Profile {
        provider: Provider::Aws,
        path_style: false,
        checksum_when_required: false,
        url_encoded_listing: true,
        multipart_etag: EtagKind::Md5OfParts,
        part_copy: true,
        region_from_aws_config: true,
        needs_endpoint: false,
        ..CAUTIOUS
    },
    Profile {
        provider: Provider::AliyunOss,
        path_style: false,
        part_copy: true,
        needs_endpoint: false,
        // OSS refuses CopyObject above 1 GiB.
        copy_object_max: GIB,
        archive_classes: &["Archive", "ColdArchive", "DeepColdArchive"],
        default_region: "cn-hangzhou",
        endpoint_template: Some("https://oss-{region}.aliyuncs.com"),
        ..CAUTIOUS
    },
    Profile {
        provider: Provider::TencentCos,
        path_style: false,
        archive_classes: &["ARCHIVE", "DEEP_ARCHIVE"],
        part_copy: true,
        needs_endpoint: false,
        list_v1: true,
        default_region: "ap-guangzhou",
        endpoint_template: Some("https://cos.{region}.myqcloud.com"),
        ..CAUTIOUS
    },
    Profile {
        provider: Provider::QiniuKodo,
        needs_endpoint: false,
        default_region: "cn-east-1",
        endpoint_template: Some("https://s3.{region}.qiniucs.com"),
        ..CAUTIOUS
    },
    Profile {
        provider: Provider::Gcs,
        // GCS reads ARCHIVE and COLDLINE objects directly.
        archive_classes: &[],
        needs_endpoint: false,
        default_region: "auto",
        endpoint_template: Some("https://storage.googleapis.com"),
        ..CAUTIOUS
    },
    Profile {
        provider: Provider::Minio,
        url_encoded_listing: true,
        part_copy: true,
        multipart_etag: EtagKind::Md5OfParts,
        ..CAUTIOUS
    },
    Profile {
        provider: Provider::Ceph,
        multipart_etag: EtagKind::Md5OfParts,
        part_copy: true,
        list_v1: true,
        ..CAUTIOUS
    },
    CAUTIOUS,
];

impl Profile {
    /// The profile of a provider.
    pub fn for_provider(provider: Provider) -> &'static Profile {
        PROFILES
            .iter()
            .find(|p| p.provider == provider)
            .unwrap_or(&PROFILES[PROFILES.len() - 1])
    }

    /// The endpoint URL for a region, when the provider has a fixed pattern and the user gave none.
    pub fn endpoint_for(&self, region: &str) -> Option<String> {
        self.endpoint_template
            .map(|t| t.replace("{region}", region))
    }

    /// Whether objects of this storage class must be restored before they can be read.
    pub fn is_archived(&self, class: Option<&str>) -> bool {
        class.is_some_and(|c| {
            self.archive_classes
                .iter()
                .any(|a| a.eq_ignore_ascii_case(c))
        })
    }

    /// Part size for an object: at least `wanted` and the provider minimum, grown in whole MiB so the
    /// object fits in `max_parts` parts.
    pub fn part_size_for(&self, object_size: u64, wanted: u64) -> u64 {
        let mut part = wanted.max(self.min_part);
        let fit = object_size.div_ceil(self.max_parts);
        if fit > part {
            part = fit.div_ceil(MIB) * MIB;
        }
        part.min(self.max_part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_a_profile() {
        for p in Provider::ALL {
            assert_eq!(Profile::for_provider(p).provider, p);
        }
    }

    #[test]
    fn non_aws_providers_skip_checksum_trailers() {
        for p in Provider::ALL {
            let prof = Profile::for_provider(p);
            assert_eq!(prof.checksum_when_required, p != Provider::Aws, "{p}");
        }
    }

    #[test]
    fn derives_regional_endpoints() {
        let oss = Profile::for_provider(Provider::AliyunOss);
        assert_eq!(
            oss.endpoint_for("cn-beijing").unwrap(),
            "https://oss-cn-beijing.aliyuncs.com"
        );
        let cos = Profile::for_provider(Provider::TencentCos);
        assert_eq!(
            cos.endpoint_for("ap-shanghai").unwrap(),
            "https://cos.ap-shanghai.myqcloud.com"
        );
        let kodo = Profile::for_provider(Provider::QiniuKodo);
        assert!(kodo.path_style);
        assert_eq!(
            kodo.endpoint_for("cn-east-1").unwrap(),
            "https://s3.cn-east-1.qiniucs.com"
        );
        assert!(!oss.path_style && !cos.path_style);
        assert_eq!(
            Profile::for_provider(Provider::Aws).endpoint_for("cn-north-1"),
            None
        );
    }

    #[test]
    fn self_hosted_servers_need_an_endpoint() {
        for p in [Provider::Minio, Provider::Ceph, Provider::Other] {
            assert!(Profile::for_provider(p).needs_endpoint, "{p}");
        }
        assert!(!Profile::for_provider(Provider::Aws).needs_endpoint);
        assert_eq!(
            Profile::for_provider(Provider::AliyunOss).copy_object_max,
            GIB
        );
        assert!(!Profile::for_provider(Provider::Other).part_copy);
        let aws = Profile::for_provider(Provider::Aws);
        assert!(
            aws.is_archived(Some("GLACIER"))
                && !aws.is_archived(Some("STANDARD"))
                && !aws.is_archived(None)
        );
        assert!(Profile::for_provider(Provider::AliyunOss).is_archived(Some("ColdArchive")));
        assert!(!Profile::for_provider(Provider::Gcs).is_archived(Some("ARCHIVE")));
    }

    #[test]
    fn part_size_grows_to_fit_max_parts() {
        let p = Profile::for_provider(Provider::Aws);
        assert_eq!(p.part_size_for(100 * MIB, 16 * MIB), 16 * MIB);
        assert_eq!(p.part_size_for(100 * MIB, MIB), 5 * MIB);
        // 1 TiB in 16 MiB parts would be 65,536 parts: grown to 105 MiB (≤ 10,000 parts).
        let big = 1024 * GIB;
        let part = p.part_size_for(big, 16 * MIB);
        assert!(big.div_ceil(part) <= 10_000);
        assert_eq!(part, 105 * MIB);
        assert_eq!(p.part_size_for(5 * 1024 * GIB, 16 * MIB), 525 * MIB);
    }
}
