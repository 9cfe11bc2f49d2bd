//! Resolves a deploy's image to its manifest digest in Kiln's registry (in-process: the
//! registry's tables in the store), so a deployment always names exactly what it ran.

use kiln_store::{ProjectId, Store};

use super::invalid;
use super::plan::{ImageName, Reference, parse_image};
use crate::error::ApiResult;

/// An image found in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// As asked.
    pub image: String,
    /// Its manifest's digest.
    pub digest: String,
    /// `<registry host>/<repo>@<digest>`.
    pub image_ref: String,
}

/// How many tags an error lists.
const LIST_TAGS: u32 = 20;

/// Finds `image` in the registry for a deploy of `project`: its repository must exist and
/// belong to the project (or be public), and its tag or digest name a manifest. 422 otherwise,
/// naming what is missing (and the tags there are).
pub async fn resolve(
    store: &Store,
    registry_host: &str,
    project: &ProjectId,
    image: &str,
) -> ApiResult<Resolved> {
    let ImageName { repo, reference } = parse_image(image, registry_host).map_err(invalid)?;
    kiln_registry::names::check_repository(&repo)
        .map_err(|e| invalid(format!("image `{image}`: {}", e.message)))?;
    let missing =
        |why: String| invalid(format!("image `{image}` is not in Kiln's registry: {why}"));
    let Some(r) = store.registry_repository(&repo).await? else {
        return Err(missing(format!(
            "no repository `{repo}` (push it first: `docker push {registry_host}/{repo}:<tag>`)"
        )));
    };
    if r.project_id != *project && !r.public {
        return Err(invalid(format!(
            "image `{image}` belongs to another project's private repository `{repo}`: deploy \
             an image of this project, or make `{repo}` public (`kiln registry public`)"
        )));
    }
    let wanted = match &reference {
        Reference::Tag(t) => t.as_str(),
        Reference::Digest(d) => d.as_str(),
    };
    let Some(m) = store.registry_manifest(&repo, wanted).await? else {
        return Err(match reference {
            Reference::Tag(tag) => {
                let tags = store.registry_tags(&repo, None, LIST_TAGS + 1).await?;
                let listed = match tags.len() {
                    0 => "it has no tags".to_string(),
                    n if n > LIST_TAGS as usize => {
                        format!("tags: {}, …", tags[..LIST_TAGS as usize].join(", "))
                    }
                    _ => format!("tags: {}", tags.join(", ")),
                };
                missing(format!("no tag `{tag}` in `{repo}` ({listed})"))
            }
            Reference::Digest(d) => missing(format!("no manifest `{d}` in `{repo}`")),
        });
    };
    Ok(Resolved {
        image: image.trim().to_string(),
        image_ref: format!("{registry_host}/{repo}@{}", m.digest),
        digest: m.digest,
    })
}
