//! What a run of a spec would do now (a dry run's counts: [`Plan`]) and what it would cost
//! ([`CostEstimate`]), priced from a [`PriceTable`] of per-provider, per-region list prices that
//! ships with defaults ([`PriceTable::defaults`]) and that an admin can replace.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a run would do now, and its cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Plan {
    /// `s3` or `image`.
    pub kind: String,
    /// For an object task: the objects.
    pub objects: Option<ObjectPlan>,
    /// For an image task: the images.
    pub images: Option<ImagePlan>,
    /// The requests the run would make.
    pub requests: Requests,
    /// Bytes read out of the source.
    pub egress_bytes: u64,
    /// The estimate from the price table.
    pub cost: CostEstimate,
}

/// The objects of a plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectPlan {
    /// Objects to copy (missing or changed at the destination).
    pub copy: u64,
    /// Their bytes.
    pub copy_bytes: u64,
    /// Objects up to date (skipped).
    pub skip: u64,
    /// Their bytes.
    pub skip_bytes: u64,
    /// Destination objects to delete (only with delete propagation on).
    pub delete: u64,
    /// Their bytes.
    pub delete_bytes: u64,
    /// Objects to copy whose source storage class is an archive (Glacier, Deep Archive, OSS
    /// Archive…): they must be restored before a copy can read them.
    pub archived: u64,
    /// Their bytes.
    pub archived_bytes: u64,
    /// Objects to copy that are large enough for a multipart upload.
    pub multipart: u64,
    /// Listing errors (partitions that could not be listed); the counts leave them out.
    pub errors: Vec<String>,
}

/// The images of a plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImagePlan {
    /// Images (tags or digests) to copy.
    pub copy: u64,
    /// Images whose destination tag already has the source's digest.
    pub up_to_date: u64,
    /// Images whose check failed (a run would try them and record the error); their blobs are
    /// not counted.
    pub unchecked: u64,
    /// Distinct blobs (layers and configs) the images to copy refer to.
    pub blobs: u64,
    /// Their bytes (the most a run reads; blobs already at the destination are not sent).
    pub bytes: u64,
    /// Why images could not be checked (at most 20).
    pub errors: Vec<String>,
}

/// The requests a run would make, by side and class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Requests {
    /// Listings of the source (1,000 keys each).
    pub source_list: u64,
    /// Reads at the source (GET and HEAD: one per object or part; manifests and blobs).
    pub source_get: u64,
    /// Listings of the destination.
    pub destination_list: u64,
    /// Writes at the destination (PUT and copy; a multipart upload is its parts plus two).
    pub destination_put: u64,
    /// Deletes at the destination.
    pub destination_delete: u64,
}

/// List prices of one provider in one region (or a pattern of regions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// A provider name (`aws`, `aliyun-oss`, `tencent-cos`, `qiniu-kodo`, `gcs`, `minio`, `ceph`,
    /// `other`, or `registry` for image registries that are not ECR), or `*` for any.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 40,
            pattern = r"^[^*]*\*?$",
            example = "aws"
        )
    )]
    pub provider: String,
    /// A region, a prefix ending in `*` (`cn-*`), or `*` for any.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 40,
            pattern = r"^[^*]*\*?$",
            example = "*"
        )
    )]
    pub region: String,
    /// ISO 4217 code of every price of this entry.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Z]{3}$", example = "USD"))]
    pub currency: String,
    /// Per 1,000 PUT, COPY, POST requests.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub put_per_1000: f64,
    /// Per 1,000 GET and HEAD requests.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub get_per_1000: f64,
    /// Per 1,000 LIST requests.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub list_per_1000: f64,
    /// Per GB (10⁹ bytes) read out to another provider or the internet.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub egress_internet_per_gb: f64,
    /// Per GB read out to another region of the same provider (and partition).
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub egress_region_per_gb: f64,
}

/// The price table: the first matching entry prices a side (exact region before a pattern,
/// a named provider before `*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// The entries.
    #[cfg_attr(feature = "openapi", schema(max_items = 500))]
    pub prices: Vec<Price>,
}

/// Where a side of a transfer is, for pricing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedSide {
    /// Provider name, as in [`Price::provider`].
    pub provider: String,
    /// Region (empty when unknown).
    pub region: String,
}

/// The cost of a plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CostEstimate {
    /// One line per priced quantity.
    pub lines: Vec<CostLine>,
    /// The sum per currency (`{"USD": 1.23}`).
    pub totals: BTreeMap<String, f64>,
}

/// One priced quantity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CostLine {
    /// `source` or `destination`.
    pub side: String,
    /// `list`, `get`, `put` (per 1,000 requests) or `egress` (per GB).
    pub what: String,
    /// Requests, or bytes for egress.
    pub quantity: u64,
    /// The price used: per 1,000 requests, or per GB.
    pub unit_price: f64,
    /// quantity × unit price.
    pub amount: f64,
    /// Its currency.
    pub currency: String,
    /// The entry that priced it (`aws/cn-*`).
    pub price: String,
}

impl PriceTable {
    /// The table the hub ships with: approximate public list prices (standard storage class,
    /// first pricing tier) to be checked against one's own contract and replaced.
    pub fn defaults() -> PriceTable {
        let p = |provider: &str, region: &str, cur: &str, put, get, list, inet, reg| Price {
            provider: provider.into(),
            region: region.into(),
            currency: cur.into(),
            put_per_1000: put,
            get_per_1000: get,
            list_per_1000: list,
            egress_internet_per_gb: inet,
            egress_region_per_gb: reg,
        };
        PriceTable {
            prices: vec![
                p("aws", "cn-*", "CNY", 0.0405, 0.0027, 0.0405, 0.933, 0.6),
                p(
                    "aws", "us-gov-*", "USD", 0.0065, 0.0005, 0.0065, 0.155, 0.03,
                ),
                p("aws", "*", "USD", 0.005, 0.0004, 0.005, 0.09, 0.02),
                p("aliyun-oss", "*", "CNY", 0.01, 0.01, 0.01, 0.5, 0.5),
                p("tencent-cos", "*", "CNY", 0.01, 0.01, 0.01, 0.5, 0.5),
                p("qiniu-kodo", "*", "CNY", 0.01, 0.01, 0.01, 0.29, 0.29),
                p("gcs", "*", "USD", 0.005, 0.0004, 0.005, 0.12, 0.02),
                p("*", "*", "USD", 0.0, 0.0, 0.0, 0.0, 0.0),
            ],
        }
    }

    /// Checks what the schema cannot say: numbers finite and not negative, currency codes,
    /// patterns, size. The message names the entry and field.
    pub fn validate(&self) -> Result<(), String> {
        if self.prices.len() > 500 {
            return Err(format!(
                "prices: {} entries; at most 500",
                self.prices.len()
            ));
        }
        for (i, p) in self.prices.iter().enumerate() {
            let at = format!("prices[{i}]");
            for (field, v) in [("provider", &p.provider), ("region", &p.region)] {
                let star = v.find('*');
                if v.is_empty() || v.chars().count() > 40 || star.is_some_and(|s| s != v.len() - 1)
                {
                    return Err(format!(
                        "{at}.{field}: {v:?} must be 1 to 40 characters, `*` only at the end"
                    ));
                }
            }
            if p.currency.len() != 3 || !p.currency.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!(
                    "{at}.currency: {:?} is not an ISO 4217 code such as USD or CNY",
                    p.currency
                ));
            }
            for (field, v) in [
                ("put_per_1000", p.put_per_1000),
                ("get_per_1000", p.get_per_1000),
                ("list_per_1000", p.list_per_1000),
                ("egress_internet_per_gb", p.egress_internet_per_gb),
                ("egress_region_per_gb", p.egress_region_per_gb),
            ] {
                if !v.is_finite() || v < 0.0 {
                    return Err(format!("{at}.{field}: {v} must be a price of 0 or more"));
                }
            }
        }
        Ok(())
    }

    /// The entry pricing a side: the most specific match (named provider over `*`, exact region
    /// over a longer pattern over a shorter one), the first of equals.
    pub fn lookup(&self, side: &PricedSide) -> Option<&Price> {
        let specificity = |pattern: &str, value: &str| -> Option<usize> {
            match pattern.strip_suffix('*') {
                Some(prefix) => value.starts_with(prefix).then_some(prefix.len()),
                None => (pattern == value).then_some(usize::MAX),
            }
        };
        self.prices
            .iter()
            .filter_map(|p| {
                let a = specificity(&p.provider, &side.provider)?;
                let b = specificity(&p.region, &side.region)?;
                Some(((a, b), p))
            })
            .fold(
                None,
                |best: Option<((usize, usize), &Price)>, (k, p)| match best {
                    Some((bk, _)) if bk >= k => best,
                    _ => Some((k, p)),
                },
            )
            .map(|(_, p)| p)
    }

    /// Prices the requests and egress of a plan. Egress is charged by the source: nothing within
    /// one region of one provider, the region price between regions of one provider's partition,
    /// the internet price otherwise. A side no entry matches is left out.
    pub fn estimate(
        &self,
        source: &PricedSide,
        destination: &PricedSide,
        requests: &Requests,
        egress_bytes: u64,
    ) -> CostEstimate {
        let mut est = CostEstimate::default();
        let mut add = |side: &str, price: &Price, what: &str, quantity: u64, unit_price: f64| {
            if quantity == 0 {
                return;
            }
            let per = if what == "egress" { 1e9 } else { 1000.0 };
            let amount = quantity as f64 / per * unit_price;
            *est.totals.entry(price.currency.clone()).or_default() += amount;
            est.lines.push(CostLine {
                side: side.into(),
                what: what.into(),
                quantity,
                unit_price,
                amount,
                currency: price.currency.clone(),
                price: format!("{}/{}", price.provider, price.region),
            });
        };
        if let Some(p) = self.lookup(source) {
            add("source", p, "list", requests.source_list, p.list_per_1000);
            add("source", p, "get", requests.source_get, p.get_per_1000);
            let egress = if source.provider != destination.provider || source.provider == "other" {
                p.egress_internet_per_gb
            } else if source.region == destination.region {
                0.0
            } else if partition(&source.region) == partition(&destination.region) {
                p.egress_region_per_gb
            } else {
                p.egress_internet_per_gb
            };
            add("source", p, "egress", egress_bytes, egress);
        }
        if let Some(p) = self.lookup(destination) {
            add(
                "destination",
                p,
                "list",
                requests.destination_list,
                p.list_per_1000,
            );
            add(
                "destination",
                p,
                "put",
                requests.destination_put,
                p.put_per_1000,
            );
        }
        est
    }
}

/// The AWS partition a region belongs to (China and GovCloud are apart from the rest).
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(provider: &str, region: &str) -> PricedSide {
        PricedSide {
            provider: provider.into(),
            region: region.into(),
        }
    }

    #[test]
    fn the_most_specific_entry_prices_a_side() {
        let t = PriceTable::defaults();
        assert_eq!(
            t.lookup(&side("aws", "cn-north-1")).unwrap().currency,
            "CNY"
        );
        assert_eq!(
            t.lookup(&side("aws", "us-gov-west-1")).unwrap().region,
            "us-gov-*"
        );
        assert_eq!(t.lookup(&side("aws", "eu-west-1")).unwrap().region, "*");
        assert_eq!(t.lookup(&side("minio", "")).unwrap().provider, "*");
        let mut t = t;
        t.prices.push(Price {
            region: "eu-west-1".into(),
            ..t.prices[2].clone()
        });
        assert_eq!(
            t.lookup(&side("aws", "eu-west-1")).unwrap().region,
            "eu-west-1"
        );
    }

    #[test]
    fn egress_follows_where_the_bytes_go() {
        let t = PriceTable::defaults();
        let r = Requests {
            source_get: 2000,
            destination_put: 1000,
            ..Requests::default()
        };
        let gb = 10_000_000_000;
        let same = t.estimate(&side("aws", "us-east-1"), &side("aws", "us-east-1"), &r, gb);
        assert!(
            same.lines
                .iter()
                .all(|l| l.what != "egress" || l.amount == 0.0)
        );
        let usd = |e: &CostEstimate| e.totals["USD"];
        assert!((usd(&same) - (2.0 * 0.0004 + 0.005)).abs() < 1e-9);
        let region = t.estimate(&side("aws", "us-east-1"), &side("aws", "eu-west-1"), &r, gb);
        assert!((usd(&region) - usd(&same) - 10.0 * 0.02).abs() < 1e-9);
        let out = t.estimate(
            &side("aws", "us-east-1"),
            &side("aws", "cn-north-1"),
            &r,
            gb,
        );
        // The destination is priced in its own currency.
        assert!((out.totals["USD"] - (2.0 * 0.0004 + 10.0 * 0.09)).abs() < 1e-9);
        assert!((out.totals["CNY"] - 0.0405).abs() < 1e-9);
    }

    #[test]
    fn bad_tables_are_named() {
        let mut t = PriceTable::defaults();
        assert_eq!(t.validate(), Ok(()));
        t.prices[1].get_per_1000 = -1.0;
        assert!(
            t.validate()
                .unwrap_err()
                .starts_with("prices[1].get_per_1000")
        );
        t.prices[1].get_per_1000 = 0.0;
        t.prices[0].currency = "usd".into();
        assert!(t.validate().unwrap_err().starts_with("prices[0].currency"));
        t.prices[0].currency = "USD".into();
        t.prices[0].region = "c*n".into();
        assert!(t.validate().unwrap_err().starts_with("prices[0].region"));
    }
}
