//! Advisory imports (`kiln registry advisories import`): OSV files read whole first (a
//! malformed one refuses the import, naming the file and the position, and nothing is
//! stored), then the stored images matched again with the new index, and the advisories,
//! changed findings and `vulnerability` events stored in one transaction.

use std::collections::{BTreeMap, BTreeSet};

use kiln_api::scan::{AdvisoryFile, AdvisoryImportReport, VulnerabilityNotice};
use kiln_scan::Advisory;
use kiln_store::{AdvisoryImport, FindingRecord, NewAdvisory};

use super::{Advisories, Scanner, finding_record, package_of};
use crate::error::{ApiErr, ApiResult};

/// Why a file cannot be imported: 400 naming it and where.
fn refused(message: impl std::fmt::Display) -> ApiErr {
    ApiErr::bad_request(format!("nothing was imported: {message}"))
}

fn key(f: &FindingRecord) -> (&str, &str, &str, &str, &str) {
    (&f.advisory, &f.ecosystem, &f.package, &f.installed, &f.source)
}

impl Scanner {
    /// Imports `files` (all or nothing) and notifies the stored images newly matched.
    pub async fn import(&self, files: &[AdvisoryFile]) -> ApiResult<AdvisoryImportReport> {
        if files.is_empty() {
            return Err(refused("no files were given"));
        }
        let mut read: BTreeMap<String, Advisory> = BTreeMap::new();
        let mut count = 0u64;
        for f in files {
            let list = kiln_scan::parse_osv(f.content.as_bytes(), &f.name).map_err(refused)?;
            count += list.len() as u64;
            for a in list {
                // The same id twice: the most recently modified wins.
                if read.get(&a.id).is_none_or(|b| b.modified <= a.modified) {
                    read.insert(a.id.clone(), a);
                }
            }
        }
        let mut advisories = self.inner.advisories.write().await;
        let ids: Vec<String> = read.keys().cloned().collect();
        let stored = self.store().stored_advisories(&ids).await?;
        let mut report = AdvisoryImportReport {
            files: files.len() as u64,
            read: count,
            ..AdvisoryImportReport::default()
        };
        let mut changed = Vec::new();
        for (id, a) in &read {
            let osv = serde_json::to_value(a)
                .map_err(|e| ApiErr::internal(format!("advisory {id}: {e}")))?;
            match stored.get(id) {
                Some(s) if s.osv == osv => report.unchanged += 1,
                Some(_) => {
                    report.updated += 1;
                    changed.push((a.clone(), osv));
                }
                None => {
                    report.new += 1;
                    changed.push((a.clone(), osv));
                }
            }
        }
        if changed.is_empty() {
            report.total = advisories.by_id.len() as u64;
            return Ok(report);
        }
        let mut by_id = advisories.by_id.clone();
        for (a, _) in &changed {
            by_id.insert(a.id.clone(), a.clone());
        }
        let next = Advisories::new(by_id);
        let changed_ids: BTreeSet<&str> = changed.iter().map(|(a, _)| a.id.as_str()).collect();
        let mut import = AdvisoryImport {
            advisories: changed
                .iter()
                .map(|(a, osv)| NewAdvisory {
                    id: a.id.clone(),
                    modified: a.modified.clone(),
                    osv: osv.clone(),
                    packages: a
                        .affected
                        .iter()
                        .map(|x| (x.ecosystem.osv_name().to_string(), x.package.clone()))
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect(),
                })
                .collect(),
            ..AdvisoryImport::default()
        };
        for digest in self.store().scanned_digests().await? {
            let packages: Vec<_> =
                self.store().image_packages(&digest).await?.iter().filter_map(package_of).collect();
            let mut now: Vec<FindingRecord> =
                next.index.matches(&packages).iter().map(finding_record).collect();
            let mut before = self.store().image_findings(&digest).await?;
            now.sort_by(|a, b| key(a).cmp(&key(b)));
            before.sort_by(|a, b| key(a).cmp(&key(b)));
            if now == before {
                continue;
            }
            let had: BTreeSet<&str> = before.iter().map(|f| f.advisory.as_str()).collect();
            let fresh: BTreeSet<String> = now
                .iter()
                .map(|f| f.advisory.as_str())
                .filter(|a| changed_ids.contains(a) && !had.contains(a))
                .map(str::to_string)
                .collect();
            if !fresh.is_empty() {
                import.notices.push((digest.clone(), fresh.into_iter().collect()));
            }
            import.findings.push((digest, now));
        }
        let events = self.store().import_advisories(&import).await?;
        if !events.is_empty() {
            self.inner.registry.wake_webhooks();
        }
        report.images_changed = import.findings.len() as u64;
        report.total = next.by_id.len() as u64;
        report.notices = events
            .into_iter()
            .map(|e| VulnerabilityNotice {
                repository: e.repository,
                tags: e.tags,
                digest: e.digest,
                advisories: e.advisories,
            })
            .collect();
        *advisories = next;
        tracing::info!(
            "imported advisories: {} new, {} updated, {} unchanged; {} images notified",
            report.new,
            report.updated,
            report.unchanged,
            report.notices.len()
        );
        Ok(report)
    }
}
