//! Dry runs of a spec before it is created ([`Hub::plan`]): the same listing and diff (objects) or
//! plan and HEAD checks (images) a run's finder makes, counted instead of queued, with the requests
//! the run would make and their cost from the hub's price table ([`Hub::prices`]).

use std::collections::HashSet;
use std::sync::Arc;

use dth_model::{
    Actor, EndpointSpec, ImageEndpoint, ImagePlan, Job, ObjectPlan, Plan, PriceTable, PricedSide,
    Requests, Role, S3Job,
};
use dth_s3::{Finder, Found};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::Error;
use crate::engine::{connect, open_images};
use crate::hub::Hub;

/// Keys per LIST page.
const LIST_PAGE: u64 = 1000;
/// Image check errors kept in a plan.
const MAX_ERRORS: usize = 20;

impl Hub {
    /// What a run of `spec` (task JSON, as for [`Hub::create_task`]; nothing is stored) would do
    /// now, and its cost (operator: it reads both sides with the spec's credentials).
    pub async fn plan(&self, actor: &Actor, spec: &serde_json::Value) -> Result<Plan, Error> {
        actor.require(Role::Operator)?;
        let spec = self.read_spec(spec).await?;
        let prices = self.price_table().await?;
        match &spec.job {
            Job::S3(job) => self.plan_objects(job, &prices).await,
            Job::Image(job) => self.plan_images(job, &prices).await,
        }
    }

    async fn plan_objects(&self, job: &S3Job, prices: &PriceTable) -> Result<Plan, Error> {
        let (src, dst) = connect(self.store.as_ref(), job).await?;
        let server_side = job.options.server_side_copy && src.same_service(&dst);
        let finder = Finder::new(src.clone(), dst.clone(), job.options.clone())?;
        let (tx, mut rx) = mpsc::channel(1024);
        let walk = finder.start_checked(tx).await?;
        let mut objects = ObjectPlan::default();
        let mut requests = Requests::default();
        let mut egress_bytes = 0;
        let (mut src_keys, mut dst_keys) = (0u64, 0u64);
        while let Some(found) = rx.recv().await {
            match found {
                Found::Copy(o) => {
                    src_keys += 1;
                    objects.copy += 1;
                    objects.copy_bytes += o.size;
                    if src.profile().is_archived(o.storage_class.as_deref()) {
                        objects.archived += 1;
                        objects.archived_bytes += o.size;
                    }
                    let multipart =
                        o.size >= job.options.multipart_threshold || o.size >= job.giant_threshold;
                    let parts = if multipart {
                        objects.multipart += 1;
                        let part = dst.profile().part_size_for(o.size, job.options.part_size);
                        o.size.div_ceil(part.max(1)).max(1)
                    } else {
                        1
                    };
                    requests.destination_put += if multipart { parts + 2 } else { 1 };
                    if !server_side {
                        requests.source_get += parts;
                        egress_bytes += o.size;
                    }
                }
                Found::Delete(o) => {
                    dst_keys += 1;
                    objects.delete += 1;
                    objects.delete_bytes += o.size;
                    requests.destination_delete += 1;
                }
                Found::UpToDate(o) => {
                    src_keys += 1;
                    dst_keys += 1;
                    objects.skip += 1;
                    objects.skip_bytes += o.size;
                }
            }
        }
        objects.errors = walk
            .await
            .map_err(|e| Error::Conflict(format!("the listing crashed: {e}")))?;
        requests.source_list = src_keys.div_ceil(LIST_PAGE).max(1);
        requests.destination_list = dst_keys.div_ceil(LIST_PAGE).max(1);
        let cost = prices.estimate(
            &s3_side(&job.source),
            &s3_side(&job.destination),
            &requests,
            egress_bytes,
        );
        Ok(Plan {
            kind: "s3".into(),
            objects: Some(objects),
            images: None,
            requests,
            egress_bytes,
            cost,
        })
    }

    async fn plan_images(
        &self,
        job: &dth_model::ImageSync,
        prices: &PriceTable,
    ) -> Result<Plan, Error> {
        let sync = open_images(self.store.as_ref(), job).await?;
        let copier = sync.copier();
        let jobs = sync.plan().await?;
        let concurrency = job.concurrency.max(1);
        let mut checks = futures::stream::iter(jobs.into_iter().map(|j| {
            let copier = Arc::clone(&copier);
            async move {
                let key = format!("{}:{}", j.src_repo, j.reference);
                match copier.check_from_source(&j).await {
                    Ok((_, _, true)) => (key, Ok(None)),
                    Ok((head, _, false)) => (key, copier.blobs(&j, &head).await.map(Some)),
                    Err(e) => (key, Err(e)),
                }
            }
        }))
        .buffer_unordered(concurrency);
        let mut images = ImagePlan::default();
        let mut requests = Requests::default();
        let mut seen = HashSet::new();
        while let Some((key, checked)) = checks.next().await {
            // A HEAD of each side per image.
            requests.source_get += 1;
            match checked {
                Ok(None) => images.up_to_date += 1,
                Ok(Some(blobs)) => {
                    images.copy += 1;
                    // The manifests, then each new blob once.
                    requests.destination_put += 1;
                    for b in blobs {
                        if seen.insert(b.digest.clone()) {
                            images.blobs += 1;
                            images.bytes += b.size;
                            requests.source_get += 1;
                            requests.destination_put += 1;
                        }
                    }
                }
                Err(e) => {
                    images.unchecked += 1;
                    if images.errors.len() < MAX_ERRORS {
                        images.errors.push(format!("{key}: {e}"));
                    }
                }
            }
        }
        let egress_bytes = images.bytes;
        let cost = prices.estimate(
            &image_side(&job.source),
            &image_side(&job.destination),
            &requests,
            egress_bytes,
        );
        Ok(Plan {
            kind: "image".into(),
            objects: None,
            images: Some(images),
            requests,
            egress_bytes,
            cost,
        })
    }
}

/// Where an S3 endpoint is, for pricing.
fn s3_side(e: &EndpointSpec) -> PricedSide {
    PricedSide {
        provider: e.provider.to_string(),
        region: e.region.clone().unwrap_or_default(),
    }
}

/// Where a registry is, for pricing: ECR is AWS in its region; other registries are `registry`
/// with the host as region.
fn image_side(e: &ImageEndpoint) -> PricedSide {
    if let Some(rest) = e.location.strip_prefix("ecr://") {
        let account_region = rest.split('/').next().unwrap_or_default();
        let region = account_region
            .split_once('.')
            .map(|(_, r)| r)
            .unwrap_or_default();
        return PricedSide {
            provider: "aws".into(),
            region: region.into(),
        };
    }
    let host = e
        .location
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
        .unwrap_or_default();
    PricedSide {
        provider: "registry".into(),
        region: host.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_priced_where_they_are() {
        let ecr = image_side(&ImageEndpoint::new("ecr://123456789012.cn-north-1/app"));
        assert_eq!(
            (ecr.provider.as_str(), ecr.region.as_str()),
            ("aws", "cn-north-1")
        );
        let hub = image_side(&ImageEndpoint::new("docker://quay.io/team/app"));
        assert_eq!(
            (hub.provider.as_str(), hub.region.as_str()),
            ("registry", "quay.io")
        );
        let dir = image_side(&ImageEndpoint::new("oci:/tmp/layout"));
        assert_eq!(dir.provider, "registry");
    }
}
