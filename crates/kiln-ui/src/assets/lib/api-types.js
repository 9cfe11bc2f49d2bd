// @ts-check
// Kiln web UI: the shapes of the API's answers and bodies, as JSDoc types, generated from the
// components of docs/openapi.json by `cargo xtask api-types`; do not edit (`cargo xtask tidy`
// fails when it is not current). Modules use them as `import('./api-types.js').RunDetail`.

/**
 * One OSV file of an import: its name (for errors) and its text.
 * @typedef {object} AdvisoryFile
 * @property {string} content Its text: one OSV advisory object, an array of them, or JSON lines.
 * @property {string} name The file's name as the user gave it (errors name it).
 */

/**
 * What an import did.
 * @typedef {object} AdvisoryImportReport
 * @property {number} files Files read.
 * @property {number} images_changed Images whose findings changed.
 * @property {number} new Advisories not stored before.
 * @property {VulnerabilityNotice[]} notices The `vulnerability` events recorded: stored images newly matched by this import.
 * @property {number} read Advisories read in them.
 * @property {number} total Advisories stored now in all.
 * @property {number} unchanged Advisories stored before as they are.
 * @property {number} updated Advisories stored before with other content (a newer `modified`).
 */

/**
 * One thing that happened to a leased attempt.
 * @typedef {{ reason: string, type: "waiting" } | { type: "started" } | { stream: string, text: string, time: string, type: "log" } | { detail: string, healthy: boolean, type: "health" } | { digest: string, release: number, type: "config_applied" } | { key: string, type: "output", value: string } | { outcome: Record<string, unknown>, type: "exited" }} AgentEvent
 */

/**
 * A connected agent.
 * @typedef {object} AgentInfo
 * @property {number} capacity Slots.
 * @property {string} connected_at Registered.
 * @property {string} executor Executor.
 * @property {string} id Session id.
 * @property {string} name Name.
 * @property {number} [protocol] The protocol the server speaks ([`PROTOCOL`]; absent: 1).
 * @property {number} running Leases it holds.
 * @property {string} [version] The server's Kiln version.
 */

/**
 * A stable error code and a message for people.
 * @typedef {object} ApiError
 * @property {string} code Stable, machine-readable: see [`codes`].
 * @property {Diagnostic[]} [diagnostics] For `invalid_workflow` and `invalid_params`: every problem found, with its position.
 * @property {string} message What was wrong and what was expected.
 */

/**
 * Body of `PUT /api/v1/projects/{project}/metrics/{name}`.
 * @typedef {object} ApplyMetricRule
 * @property {string | null} [file] Its file name, for diagnostics.
 * @property {string} yaml The metric rule file (`kind: metric`).
 */

/**
 * Body of `PUT /api/v1/projects/{project}/pipelines/{pipeline}`: the workflow to store.
 * @typedef {object} ApplyPipeline
 * @property {string | null} [file] The file name diagnostics should name (default `<pipeline>.yml`).
 * @property {Record<string, string>} [files] Template files the workflow's `uses:` refer to, by the path written there.
 * @property {string} yaml The workflow file's text.
 */

/**
 * Answer to an apply.
 * @typedef {object} ApplyResult
 * @property {string} change `created`, `updated` or `unchanged`.
 * @property {Pipeline} pipeline The pipeline as stored now.
 * @property {Diagnostic[]} [warnings] Warnings found while compiling (errors make the apply fail).
 */

/**
 * Body of `PUT /api/v1/projects/{project}/services/{service}`.
 * @typedef {object} ApplyService
 * @property {string | null} [file] Its file name, for diagnostics.
 * @property {string | null} [note] Why, kept with the version.
 * @property {string} yaml The service file (`kind: service`).
 */

/**
 * A recorded approval decision.
 * @typedef {object} ApprovalInfo
 * @property {string} at When.
 * @property {string} by Who (a token's name).
 * @property {string | null} [comment] What they wrote with it (secrets of the run masked as `***`), if anything.
 * @property {string} decision `approved` or `rejected`.
 */

/**
 * A job's stored artifacts.
 * @typedef {object} Artifact
 * @property {number} attempt Attempt that stored them.
 * @property {string} created_at Stored.
 * @property {string} digest `sha256:<hex>` of the archive.
 * @property {ArtifactFile[]} files Files inside.
 * @property {string} job Job id.
 * @property {number} size Size of the archive (tar.gz) in bytes.
 */

/**
 * A file inside an artifact archive.
 * @typedef {object} ArtifactFile
 * @property {string} path Path relative to the workspace.
 * @property {number} size Bytes.
 */

/**
 * One entry of an application's audit log.
 * @typedef {object} AuditEntry
 * @property {string} action What was done: `template`, `template removed`, `values`, `release`, `gray release`,
 *   `release requested`, `approve`, `reject`, `rollback`, `release to all`.
 * @property {string} app The application.
 * @property {string} at When.
 * @property {string} by Who.
 * @property {string} detail What changed, in words.
 * @property {string | null} [environment] The environment, for a change of one.
 * @property {number} id Its number (increasing).
 */

/**
 * What runs of one service in one environment.
 * @typedef {object} BoardCell
 * @property {Deployment | null} [active] The deployment waiting for approval or running, if one is.
 * @property {Deployment} deployment The current (succeeded) deployment, or, before the first success, the newest one.
 * @property {string} environment The environment.
 * @property {number} healthy Healthy instances of the deployed service's current version.
 * @property {number} replicas Its replicas.
 * @property {string} service The service file's name.
 */

/**
 * A commit to check out into a job's workspace (the workflow's `source`).
 * @typedef {object} Checkout
 * @property {string} commit The commit; empty: whatever `git_ref` points at now.
 * @property {string | null} [credentials] HTTP credentials: a token, or `user:token` (a project secret; never logged).
 * @property {string} git_ref The ref it was pushed as (`refs/heads/main`); empty: the remote's default branch.
 * @property {string} repository Clone URL, as the workflow's `source` wrote it.
 */

/**
 * An application's config: items, shared values and values per environment.
 * @typedef {object} ConfigApp
 * @property {string} created_at Created.
 * @property {ConfigItem[]} items Its items: one template per file.
 * @property {string} name Application name.
 * @property {string} project Project name.
 * @property {string} shared_values The values every environment shares (YAML).
 * @property {string} updated_at Last change of its items or values.
 * @property {EnvValues[]} values Each environment's values (YAML), laid over the shared ones.
 */

/**
 * An application with config, as listed.
 * @typedef {object} ConfigAppSummary
 * @property {string[]} environments The environments it has values for.
 * @property {string[]} files Its item files, by name.
 * @property {string} name Application name.
 * @property {string} project Project name.
 * @property {string} updated_at Last change of its items or values.
 */

/**
 * A diff between two sets of rendered files.
 * @typedef {object} ConfigDiff
 * @property {FileDiff[]} files The files that differ, by name.
 * @property {string} from What the old side is (`release-3`, `staging`).
 * @property {string} to What the new side is (`draft`, `prod`, `release-4`).
 * @property {string} unified Every file's unified diff, one after the other (empty: no difference).
 */

/**
 * One config item: a file rendered from a template.
 * @typedef {object} ConfigItem
 * @property {string} file The file's name (a relative path).
 * @property {string} template Its template (minijinja).
 * @property {string} updated_at When.
 * @property {string} updated_by Who set it last.
 */

/**
 * A release.
 * @typedef {object} ConfigRelease
 * @property {boolean} current Everyone gets it now.
 * @property {string | null} [decided_at] When.
 * @property {string | null} [decided_by] Who approved or rejected it (protected environments).
 * @property {string} digest Its files' digest.
 * @property {string[]} files Its file names.
 * @property {boolean} gray It is the gray release out now.
 * @property {string[]} instances A gray release's instances (empty: to everyone).
 * @property {string} kind `release` or `rollback`.
 * @property {string | null} [note] Why.
 * @property {number} number Its number (1, 2, 3… per application and environment).
 * @property {string | null} [promoted_at] When.
 * @property {string | null} [promoted_by] Who released it (a gray release) to everyone.
 * @property {string} requested_at When.
 * @property {string} requested_by Who asked.
 * @property {number | null} [rollback_of] A rollback's source release.
 * @property {string} state `pending`, `released` or `rejected`.
 */

/**
 * A release with its files and what they were rendered from.
 * @typedef {object} ConfigReleaseDetail
 * @property {Record<string, string>} files Its files, by name.
 * @property {ConfigRelease} release The release.
 * @property {string} shared_values The shared values (YAML).
 * @property {Record<string, string>} templates The templates rendered, by file.
 * @property {string} values The environment's values (YAML).
 */

/**
 * A config release for a running service instance.
 * @typedef {object} ConfigUpdate
 * @property {string} digest Its files' digest (`sha256:…`).
 * @property {Record<string, string>} files Relative file name to contents.
 * @property {string} lease The instance's lease.
 * @property {number} release The release's number.
 * @property {string | null} [signal] The signal to send once the files changed (`HUP`; no `SIG`), if the service asks for
 *   one.
 */

/**
 * Body of `POST /api/v1/projects/{project}/environments`.
 * @typedef {object} CreateEnvironment
 * @property {string | null} [after] The environment before it (`staging` after `dev`).
 * @property {string} name 1 to 64 letters, digits, `.`, `_` or `-`.
 * @property {boolean} [protected] Releases there need the approval of someone other than who asked.
 */

/**
 * Body of `POST /api/v1/projects`.
 * @typedef {object} CreateProject
 * @property {string} name 1 to 64 letters, digits, `.`, `_` or `-`.
 */

/**
 * Body of `POST /api/v1/tokens`.
 * @typedef {object} CreateToken
 * @property {string} name A name people recognise; it is what runs and approvals record as "by".
 * @property {string | null} [project] Limit the token to one project; none means every project.
 * @property {string} role `viewer`, `developer`, `admin`, or `agent` (runs agents only; never limited to a project).
 */

/**
 * Adds a webhook.
 * @typedef {object} CreateWebhook
 * @property {string[] | null} [events] What it takes: any of `push`, `run`, `vulnerability` (default: `push`).
 * @property {string | null} [secret] The key deliveries are signed with (HMAC-SHA256, `X-Kiln-Signature: sha256=<hex>`);
 *   default: one generated and returned once.
 * @property {string} url Target URL (`http://` or `https://`).
 */

/**
 * Answer to a token creation: the only time the secret is shown.
 * @typedef {object} CreatedToken
 * @property {string} secret The bearer secret (`kiln_…`).
 * @property {Token} token The token.
 */

/**
 * Body of `POST /api/v1/runs/{run}/approvals/{stage}` (approve or reject).
 * @typedef {object} DecisionRequest
 * @property {string | null} [comment] Why, for the run's record (at most 4000 characters; stored with the decision, shown
 *   with it, the run's secrets masked).
 * @property {string | null} [decision] `approve` (default) or `reject`.
 */

/**
 * What a consumer of a config gets: `GET /api/v1/projects/{project}/config/{app}/{env}`
 * (its digest is the `ETag`) and each event of its watch.
 * @typedef {object} DeliveredConfig
 * @property {string} app Application name.
 * @property {string} digest The files' digest (`sha256:…`), also the `ETag`.
 * @property {string} environment Environment name.
 * @property {Record<string, string>} files The files, by name.
 * @property {boolean} gray A gray release this consumer gets as one of its instances.
 * @property {string} project Project name.
 * @property {number} release The release's number (the watch's event id).
 */

/**
 * The config release a deployment runs with.
 * @typedef {object} DeployConfig
 * @property {string} app The config center's application.
 * @property {number} release Its release in the environment when deployed.
 */

/**
 * Body of `POST /api/v1/projects/{project}/deployments`.
 * @typedef {object} DeployRequest
 * @property {string} environment The environment to deploy to.
 * @property {string | null} [file] Its file name, for diagnostics.
 * @property {string} image An image of Kiln's registry: `shop/web:7`, `<registry host>/shop/web:7` or
 *   `shop/web@sha256:…`.
 * @property {string | null} [note] Why, kept with the deployment.
 * @property {number | null} [timeout_ms] How long the new version may take to be healthy everywhere before it is rolled back
 *   (default: the file's `update.deadline`).
 * @property {string} yaml The service file (`kind: service`).
 */

/**
 * The workflow run (and job) that made a deployment.
 * @typedef {object} DeployRun
 * @property {string} id The run's id.
 * @property {string} job The job.
 * @property {string} name `project/pipeline#number`.
 */

/**
 * A deployment of a service file to an environment. Immutable except its state, approval,
 * end and service version.
 * @typedef {object} Deployment
 * @property {string | null} [approved_at] When.
 * @property {string | null} [approved_by] Who approved it (a protected environment's).
 * @property {string} asked_at When.
 * @property {string} asked_by Who asked (`kiln` for an automatic rollback).
 * @property {DeployConfig | null} [config] The environment's config release when deployed; `null` for a service without config.
 * @property {string} digest Its manifest's digest (`sha256:…`).
 * @property {string} environment The environment.
 * @property {string | null} [finished_at] When it reached a final state.
 * @property {string} image The image as asked (`shop/web:7`).
 * @property {string} image_ref What the service runs: `<registry host>/shop/web@sha256:…`.
 * @property {string} kind `deploy`, `rollback`, `promote` or `auto-rollback`.
 * @property {string | null} [note] Why, as the asker said.
 * @property {number} number 1, 2, 3… per project, service and environment.
 * @property {string} project Project name.
 * @property {string | null} [promoted_from] The environment a promotion took its image and spec from.
 * @property {string | null} [reason] Why it failed, was rolled back or rejected.
 * @property {number | null} [rollback_of] The deployment whose image and spec it brings back (rollback, auto-rollback).
 * @property {DeployRun | null} [run] The workflow run that deployed it; `null` for a deployment asked by hand.
 * @property {string} service The service file's name (`api`).
 * @property {string} service_name The service that runs it (`api-staging`).
 * @property {number | null} [service_version] The version of that service it made; `null` until applied.
 * @property {string} state `pending` (waits for approval), `running`, `succeeded` (the environment's current
 *   one), `failed`, `rolled_back`, `rejected` or `superseded` (a later one succeeded).
 */

/**
 * One problem in a workflow file.
 * @typedef {object} Diagnostic
 * @property {number} column 1-based column.
 * @property {string} file File name as given.
 * @property {number} line 1-based line.
 * @property {string} message What is wrong and what was expected.
 * @property {string} severity `error` or `warning`.
 */

/**
 * What an edit did.
 * @typedef {object} EditResult
 * @property {string} change `changed` or `unchanged`.
 */

/**
 * An application's values in one environment.
 * @typedef {object} EnvValues
 * @property {string} environment The environment.
 * @property {string} updated_at When.
 * @property {string} updated_by Who set them last.
 * @property {string} yaml The values (YAML).
 */

/**
 * A variable of an environment.
 * @typedef {object} EnvVariable
 * @property {string} name Its name (an environment variable name).
 * @property {boolean} secret A secret: stored sealed, never shown, masked as `***` in logs.
 * @property {string} updated_at Last set.
 * @property {string} value Its value; `***` for a secret.
 */

/**
 * An environment of a project.
 * @typedef {object} Environment
 * @property {string | null} [after] The environment before it in the project's order.
 * @property {string} created_at Created.
 * @property {string} name Environment name.
 * @property {string} project Project name.
 * @property {boolean} protected Releases there need the approval of someone other than who asked.
 * @property {string} updated_at Last changed (not its variables).
 * @property {EnvVariable[]} variables Its variables, by name (secrets' values are `***`).
 */

/**
 * The environments board: the project's environments in order, and per service and
 * environment what runs there.
 * @typedef {object} EnvironmentBoard
 * @property {BoardCell[]} cells One cell per service and environment with a deployment.
 * @property {string[]} environments The environments, in the project's order.
 */

/**
 * The body of every 4xx and 5xx answer.
 * @typedef {object} ErrorBody
 * @property {ApiError} error What went wrong.
 */

/**
 * Answer to an events post.
 * @typedef {object} EventsResponse
 * @property {boolean} cancel The lease was canceled: kill the task.
 */

/**
 * One file that differs.
 * @typedef {object} FileDiff
 * @property {string} change `added`, `removed` or `changed`.
 * @property {string} file The file's name.
 * @property {string} unified Its unified diff.
 */

/**
 * A finding: what an advisory says about a package of an image.
 * @typedef {object} Finding
 * @property {string} advisory The advisory's id (`RUSTSEC-…`, `DSA-…`, `GHSA-…`).
 * @property {string[]} [aliases] Its aliases (CVE ids…).
 * @property {string} ecosystem The package's OSV ecosystem (`Debian`, `Alpine`, `crates.io`, `npm`, `PyPI`, `Go`).
 * @property {string | null} [fixed] The version that fixes it, if any.
 * @property {string} installed The version in the image.
 * @property {string} package The package.
 * @property {string} severity `unknown`, `low`, `medium`, `high` or `critical`.
 * @property {string} source The file of the image the package was read from.
 * @property {string} [summary] Its summary.
 */

/**
 * A fire time, in UTC and in the schedule's zone.
 * @typedef {object} FireTime
 * @property {string} at UTC.
 * @property {string} local The same instant in the schedule's zone, RFC 3339 with its offset
 *   (`2026-12-01T08:00:00+08:00`).
 */

/**
 * What a garbage collection of caches and artifacts removed (`POST /api/v1/gc`).
 * @typedef {object} GcReport
 * @property {string[]} artifacts Artifacts expired (`run/job`): their run ended longer ago than the age limit.
 * @property {number} bytes_freed Bytes of files deleted.
 * @property {number} cache_budget The caches' size budget in bytes.
 * @property {number} cache_bytes Bytes of the caches kept.
 * @property {string[]} caches Caches evicted (`project/key`), least recently used first: past the age limit or over
 *   the size budget.
 * @property {number} orphans Files of the blob directory that no record named, older than the grace, deleted.
 */

/**
 * A health check the agent runs next to an instance (as Marathon's and Nomad's local
 * checks are), reporting each change as a `health` event.
 * @typedef {object} HealthCheck
 * @property {number} failures Consecutive failures that make the instance unhealthy.
 * @property {number} grace_ms After the start, failures do not count for this long.
 * @property {number} interval_ms Between checks.
 * @property {Probe} probe What is checked.
 * @property {number} timeout_ms One check fails after this long.
 */

/**
 * Answer to a webhook delivery (`POST /api/v1/hooks/{provider}`).
 * @typedef {object} HookOutcome
 * @property {string} delivery The provider's delivery id.
 * @property {string} outcome What Kiln did, for people: the runs it started, or why none.
 * @property {string[]} runs Runs started (`project/pipeline#number`); empty when none.
 */

/**
 * A project's image policy (`GET`/`PUT /api/v1/projects/{project}/image-policy`).
 * @typedef {object} ImagePolicy
 * @property {boolean} [block_critical_deploys] Deploys of an image with a critical finding are refused.
 * @property {boolean} [no_critical_latest] The tag `latest` is refused on an image with a critical finding.
 */

/**
 * An image's scan and its findings (`GET /api/v1/registry/vulns`, `POST …/scan`).
 * @typedef {object} ImageScan
 * @property {string} digest Its manifest digest.
 * @property {string | null} [error] Why the last scan failed (or why the manifest is not scanned).
 * @property {Finding[]} findings The findings (at least the severity asked, if any), most severe first.
 * @property {string} image The image as asked (`<project>/<name>:<tag>` or `…@sha256:…`).
 * @property {number} packages Packages found.
 * @property {string} repository Repository.
 * @property {string | null} [scanned_at] When it was last scanned successfully.
 * @property {string} state `unscanned`, `queued`, `scanned`, `failed` or `skipped`.
 */

/**
 * An image trigger (`on.image` entry).
 * @typedef {object} ImageTriggerInfo
 * @property {string} repository Repository glob (without `/`: a repository of the pipeline's project).
 * @property {string[]} tags Tag globs; empty: every tag.
 */

/**
 * Body of `POST /api/v1/agents/{id}/images`: what changed in the agent's image cache, sent
 * only when something did (a pull, a job's image, an eviction, a prepull's end).
 * @typedef {object} ImagesReport
 * @property {NodeImage[] | null} [images] Every image its engine holds now, when that changed since the last report.
 * @property {PrepullDone[]} [prepulls] Prepull orders that ended since the last report.
 */

/**
 * Body of `POST /api/v1/registry/advisories`: OSV files to import, all or nothing.
 * @typedef {object} ImportAdvisories
 * @property {AdvisoryFile[]} files The files.
 */

/**
 * An instance's config files: the release of its service's application in its
 * environment that it gets (a gray release naming it included).
 * @typedef {object} InstanceConfig
 * @property {string} digest Its files' digest (`sha256:…`).
 * @property {Record<string, string>} files Relative file name to contents.
 * @property {OnChange} on_change What a later release does to the instance, as the service says (updates carry their
 *   own signal: the agent needs nothing more).
 * @property {string} path Where a container sees them (bind-mounted read-only; `KILN_CONFIG_DIR`). A process
 *   gets the agent's directory of them in `KILN_CONFIG_DIR` instead.
 * @property {number} release The release's number (`KILN_CONFIG_RELEASE`).
 */

/**
 * One instance of a service.
 * @typedef {object} InstanceInfo
 * @property {number | null} [config_release] The config release its files are from, as its agent last reported (a service with
 *   `config:`; none before the files were written).
 * @property {string | null} [host_ip] The node's IP.
 * @property {string} id Id.
 * @property {string | null} [node] The node it runs on.
 * @property {Record<string, number>} ports Named ports and their host ports.
 * @property {string | null} [reason] Why it is in that state (the last health check, the exit, the node lost).
 * @property {number} restarts Consecutive failures of its slot before it.
 * @property {string} since When it entered its state.
 * @property {number} slot Slot.
 * @property {string} state `staging`, `starting`, `healthy`, `unhealthy`, `stopping`, `lost` or `failed`.
 * @property {number} version The template version it runs.
 */

/**
 * What makes a lease an instance of a service.
 * @typedef {object} InstanceLease
 * @property {InstanceConfig | null} [config] The config center's files it gets, written before it starts.
 * @property {HealthCheck | null} [health] How the agent checks its health; none: healthy once running.
 * @property {string} instance The instance's id.
 * @property {string} service `project/service`.
 * @property {number} slot Its slot.
 * @property {number} version The service version it runs.
 */

/**
 * Why a job of a run failed, without opening its log: the script entry that failed, its
 * exit status, the lines just before, the node it ran on (`GET /api/v1/runs/{run}/failures`).
 * @typedef {object} JobFailure
 * @property {number} attempt Its latest attempt, the one shown.
 * @property {number | null} [exit_code] The attempt's exit code, if it exited.
 * @property {number | null} [exit_line] Line (seq) of its exit status line.
 * @property {string} job Job id.
 * @property {LogLine[]} lines The lines shown: up to `lines` (default 20) before the exit status line and that line,
 *   or the log's last lines when there is none.
 * @property {number} log_lines Lines in the job's log.
 * @property {string | null} [node] The node it ran on, if it held one (jobs the server carries out hold none).
 * @property {string | null} [reason] Why it failed, as the job's record says (`exited with code 2`, `agent lost`…).
 * @property {"pending" | "queued" | "running" | "success" | "failure" | "skipped" | "canceled" | "timeout"} state A job's state.
 * @property {string | null} [step] The failing script entry as written (`make test`), from its `exit status N: CMD` line,
 *   else the entry that was running when the job was stopped; none when the log has
 *   neither (a job that failed before its script ran).
 * @property {number | null} [step_line] Line (seq) of the entry's echo (`$ make test`) in the job's log, if it is in the part
 *   read.
 * @property {number | null} [step_status] The entry's exit status, from its exit status line.
 */

/**
 * A job of a run.
 * @typedef {object} JobInfo
 * @property {number} attempts Attempts started (0 when reused from the retried run).
 * @property {number | null} [duration_ms] From start to end (or to now while it runs).
 * @property {number | null} [exit_code] Exit code of the latest attempt.
 * @property {string | null} [finished_at] Ended.
 * @property {string} id Job id (`test[linux]` for a matrix instance).
 * @property {string[]} needs Jobs it waits for.
 * @property {string | null} [node] The node its latest attempt was placed on, kept after it ends (none before it is
 *   placed, and for a job the server carries out itself).
 * @property {Record<string, string>} outputs `JOB_OUT` outputs of the latest attempt.
 * @property {JobPlacement | null} [placement] While its latest attempt is placed or running: the node, its IP and the host ports
 *   given (a port is reached at `ip:host`).
 * @property {string | null} [reason] Why it failed, was skipped or canceled.
 * @property {string} stage Stage name.
 * @property {string | null} [started_at] First started.
 * @property {"pending" | "queued" | "running" | "success" | "failure" | "skipped" | "canceled" | "timeout"} state A job's state.
 * @property {string | null} [waiting] While `queued`: why no node takes it yet ("2 nodes: disabled; 1 node: 8 CPUs asked,
 *   6 free").
 */

/**
 * Where an attempt was placed: its node and the host ports it was given. Reach a port at
 * `ip:host` (the job sees them as `KILN_HOST_IP` and `KILN_PORT_<NAME>`).
 * @typedef {object} JobPlacement
 * @property {string} hostname Its host name (`KILN_HOSTNAME`).
 * @property {string} ip Its IP (`KILN_HOST_IP`), where the ports are published.
 * @property {string} node The node's name (`KILN_NODE`).
 * @property {PlacedPort[]} [ports] The named ports, in the order the job lists them.
 */

/**
 * One attempt of one job, leased to an agent.
 * @typedef {object} Lease
 * @property {Checkout | null} [checkout] The git commit to check out into the workspace before anything else.
 * @property {Record<string, string>} env Env added on top of the job's (project secrets, `KILN_*` variables).
 * @property {string} id Lease id.
 * @property {string[]} inputs Jobs whose artifacts to place into the workspace first.
 * @property {InstanceLease | null} [instance] Set for an instance of a service: it runs until the lease is canceled (no timeout,
 *   no artifacts or caches), its health checked by the agent (`health` events).
 * @property {number} job_index Index of the job in the plan.
 * @property {string} project Project name (caches are per project).
 * @property {PullAuth | null} [pull] Credentials to pull the job's or instance's images from Kiln's own registry: a
 *   pull-only token of the lease's project. Absent when its image is elsewhere.
 * @property {string} run Run id.
 * @property {string} run_name `project/pipeline#number`, for logs and labels.
 * @property {Record<string, unknown>} start The rendered job and its attempt number.
 */

/**
 * The events of one lease in a batch report (`POST /api/v1/agents/{id}/events`), in order.
 * @typedef {object} LeaseReport
 * @property {AgentEvent[]} events Its events since the last report, in order.
 * @property {string} lease Lease id.
 */

/**
 * Body of a lease poll.
 * @typedef {object} LeaseRequest
 * @property {number} free Slots free for new work.
 * @property {string[]} [held] Leases the agent still works on (renewed by this poll).
 * @property {number} wait_ms Answer after at most this long when nothing happens.
 */

/**
 * Answer to a lease poll.
 * @typedef {object} LeaseResponse
 * @property {string[]} [cancel] Held leases to cancel now (kill the task, report `exited` with `canceled`).
 * @property {ConfigUpdate[]} [config] New config releases for held service instances: write each (only when its digest is
 *   not the one written), send its signal, report `config_applied`.
 * @property {Lease[]} [leases] New work.
 * @property {PrepullOrder[]} [prepull] Images to pull now, beside any work; each answered in an image report.
 * @property {string[]} [unknown] Held leases the server does not know (lost or ended): stop them, report nothing.
 */

/**
 * One stored log line.
 * @typedef {object} LogLine
 * @property {string | null} [job] The job it came from (set in a whole-run log).
 * @property {LogMark | null} [mark] What the line marks, on marked lines only: a script line echoed before it ran, a failed
 *   one's exit status, a section's start or end (see `kiln_logs::marks`).
 * @property {number} seq Sequence number in its log, from 1, without gaps (the SSE event id).
 * @property {string} stream `stdout` or `stderr`.
 * @property {string} text The text, secrets masked as `***`.
 * @property {string} time When it was seen.
 */

/**
 * What a log line marks.
 * @typedef {object} LogMark
 * @property {boolean} [collapsed] A section shown collapsed at first (`section_start`).
 * @property {string} kind `command` (an echoed script line, `$ make test`), `continued` (a further line of a
 *   multi-line entry), `exit` (the exit status of a failed entry), `section_start` or
 *   `section_end` (`::group::`/`::endgroup::`, GitLab's `section_start:`/`section_end:`).
 * @property {string | null} [name] The command (`command`, `continued`, `exit`) or the section's name (a `section_end`
 *   without one closes the innermost open section).
 * @property {number | null} [status] The exit status (`exit`).
 * @property {string | null} [title] A section's header text (`section_start`).
 */

/**
 * A page of a log.
 * @typedef {object} LogPage
 * @property {boolean} closed The log is complete (the job ended).
 * @property {number} [last] Seq of the last line stored when the page was read (0 for an empty log): with it a
 *   client opens a log at its tail, or sizes a view of the whole log, from any page.
 * @property {LogLine[]} lines Lines in order.
 * @property {number} next Ask for `from=next` to go on.
 */

/**
 * A metric rule and its targets as the scraper last saw them.
 * @typedef {object} MetricRuleInfo
 * @property {string} by Who applied it last.
 * @property {string} created_at When it was first applied.
 * @property {string} format `prometheus` or `plain`.
 * @property {number} interval_ms Time between scrapes, in milliseconds.
 * @property {Record<string, string>} labels Labels added to every sample.
 * @property {string} name Rule name.
 * @property {string} path The page's path.
 * @property {string} port The instances' named port that serves the page.
 * @property {string} project Project name.
 * @property {string} selector The label selector that picks the services scraped.
 * @property {ScrapeTarget[]} targets The healthy instances its last scrape reached or tried, by service and slot.
 * @property {number} timeout_ms How long one scrape may take, in milliseconds.
 * @property {string} updated_at When it last changed.
 */

/**
 * One scraped series and its points.
 * @typedef {object} MetricSeries
 * @property {Record<string, string>} labels Its labels: `project`, `service`, `instance`, `node`, `slot`, `rule`, the rule's labels
 *   and the page's own.
 * @property {string} name The sample name (`dcc_compile_ok`).
 * @property {((number | null)[])[]} points `[unix ms, value]` pairs, oldest first; a value that is not a finite number (`NaN`,
 *   `±Inf`) is `null`.
 */

/**
 * An image a node's engine holds.
 * @typedef {object} NodeImage
 * @property {string[]} [digests] Repo digests (`127.0.0.1:7171/shop/web@sha256:…`).
 * @property {string} id The engine's image id (`sha256:…`).
 * @property {string | null} [last_used] When a task on the node last used it, or it was pulled there (the agent's clock);
 *   absent: not since the agent started keeping track.
 * @property {number} size Size in bytes.
 * @property {string[]} [tags] Repo tags (`busybox:latest`, `127.0.0.1:7171/shop/web:1`).
 */

/**
 * A node as operators see it (`kiln nodes`).
 * @typedef {object} NodeInfo
 * @property {Record<string, unknown>} attributes Attributes: the agent's own, with operators' values over them.
 * @property {number} capacity Jobs at once.
 * @property {boolean} disabled Set by an operator: no new work is placed on it.
 * @property {string} executor `docker` or `process`.
 * @property {string} hostname Host name.
 * @property {NodeImage[]} [images] The images its engine holds, as its agent last reported them (none for executors
 *   without images).
 * @property {number} index Position in the list (stable order: by name).
 * @property {string} ip The IP the node is reached at (host ports are published on it).
 * @property {string | null} [last_seen] Its agent's last poll.
 * @property {string} name The agent's name (unique).
 * @property {Record<string, unknown>} operator_attributes Attributes set by operators (`kiln nodes set`), a subset of `attributes`.
 * @property {PortRange} ports Host ports it hands out.
 * @property {Resources} resources What it has in all.
 * @property {number} running Attempts running there now.
 * @property {string} state `ready` (its agent polls), `lost` (missed heartbeats; its tasks were rescheduled) or
 *   `down` (its agent stopped or has not come back since the server started).
 */

/**
 * Body of `PATCH /api/v1/nodes/{node}`: what operators change.
 * @typedef {object} NodeUpdate
 * @property {boolean | null} [disabled] Disable (`true`) or enable (`false`) placement on it.
 * @property {Record<string, unknown>} [set] Attributes to set (over the agent's own).
 * @property {string[]} [unset] Operator attributes to remove (an attribute the agent itself declares stays).
 */

/**
 * A node's free capacity (`kiln offers`, like `bcs-client offer`).
 * @typedef {object} Offer
 * @property {Record<string, unknown>} attributes Attributes.
 * @property {Resources} free Free now.
 * @property {PortRange[]} free_ports Host port ranges not handed out.
 * @property {number} free_slots Free job slots.
 * @property {string} hostname Host name.
 * @property {number} index Position in the list.
 * @property {string} ip IP.
 * @property {string} name The agent's name.
 */

/**
 * What a new config release does to a running instance.
 * @typedef {{ mode: "restart" } | { mode: "signal", signal: string } | { mode: "none" }} OnChange
 */

/**
 * A declared parameter.
 * @typedef {object} ParamInfo
 * @property {string[]} [choices] Allowed values of a `choice`.
 * @property {string | null} [default] Default, as text.
 * @property {string | null} [description] Help text.
 * @property {string} kind `string`, `number`, `bool` or `choice`.
 * @property {string} name Name.
 * @property {boolean} required Must be given.
 */

/**
 * A run waiting at an approval stage (`GET /api/v1/approvals`).
 * @typedef {object} PendingApproval
 * @property {string[]} [defaults] The params that took their default (not given at trigger time).
 * @property {string | null} [description] The question the stage asks its approvers.
 * @property {Record<string, string>} params The run's effective params: those given and the defaults of the others, as text.
 * @property {RunSummary} run The run.
 * @property {string} stage The stage it waits at.
 * @property {number} waited_ms For how long, in milliseconds, when the list was read.
 * @property {string} waiting_since Since when it waits.
 */

/**
 * A stored pipeline.
 * @typedef {object} Pipeline
 * @property {number | null} [concurrency] At most this many runs at once (`concurrency:`); none means no limit.
 * @property {string} created_at Created.
 * @property {number} jobs Number of jobs (matrix expanded).
 * @property {string} name Pipeline name.
 * @property {ParamInfo[]} params Declared parameters.
 * @property {string} project Project name.
 * @property {string[]} stages Stage names in order.
 * @property {TriggerInfo[]} [triggers] What starts its runs (`on:`), schedules with their next fire times.
 * @property {string} updated_at Last changed.
 * @property {number} version Bumped on every change of its YAML.
 */

/**
 * A named port of a placed attempt.
 * @typedef {object} PlacedPort
 * @property {number} container The container port it maps to (equal to `host` with `network: host`).
 * @property {number} host The host port given (`KILN_PORT_<NAME>`).
 * @property {string} name The port's name in the job.
 */

/**
 * An inclusive range of host ports.
 * @typedef {object} PortRange
 * @property {number} end Last port (inclusive).
 * @property {number} start First port.
 */

/**
 * A prepull order the agent finished.
 * @typedef {object} PrepullDone
 * @property {string | null} [error] Why the pull failed; `None`: the image is on the node.
 * @property {string} id The order's id ([`PrepullOrder::id`]).
 * @property {number} [millis] How long the pull took, in milliseconds.
 */

/**
 * One node's part of a prepull.
 * @typedef {object} PrepullNode
 * @property {string | null} [detail] Why it failed or was skipped.
 * @property {number | null} [millis] How long the pull took, in milliseconds, once it ended.
 * @property {string} node The node's name.
 * @property {string} state `pulling`, `pulled`, `failed` or `skipped` (its executor has no images, or its agent
 *   is not connected).
 */

/**
 * An image for the agent to pull now (`kiln nodes prepull`, a workflow's `prepull:`),
 * reported back as a [`PrepullDone`].
 * @typedef {object} PrepullOrder
 * @property {string} id The order's id.
 * @property {string} image The image reference.
 * @property {PullAuth | null} [pull] Credentials for Kiln's registry when the image is there (a pull-only token of the
 *   image's project).
 */

/**
 * Body of `POST /api/v1/nodes/prepull`: pull an image onto nodes ahead of the jobs that
 * need it.
 * @typedef {object} PrepullRequest
 * @property {string} image The image (`busybox:latest`, `127.0.0.1:7171/shop/web:1`); an image of Kiln's
 *   registry is pulled with a pull token of its project.
 * @property {Record<string, string>} [selector] Only nodes whose attributes have these values (`city=shenzhen`; the built-in
 *   `hostname` and `ip`, and `name`, the node's name, too); empty: every node.
 */

/**
 * A prepull and how far it got on each node (`kiln nodes prepull`).
 * @typedef {object} PrepullStatus
 * @property {boolean} done Every node has answered (or was skipped).
 * @property {string} id Its id (`GET /api/v1/nodes/prepull/{id}`).
 * @property {string} image The image.
 * @property {PrepullNode[]} nodes The selected nodes, by name.
 * @property {string} started_at When it was asked for.
 */

/**
 * One health probe.
 * @typedef {{ port: string, type: "tcp" } | { path: string, port: string, type: "http" } | { argv: string[], type: "command" }} Probe
 */

/**
 * A project: a namespace of pipelines, secrets and caches.
 * @typedef {object} Project
 * @property {string} created_at Created.
 * @property {string} name Name.
 */

/**
 * What a promotion changes (or would change) in its target environment.
 * @typedef {object} PromoteChanges
 * @property {number | null} [config_from] The config release of the target's current deployment.
 * @property {number | null} [config_to] The target's current config release, which the promotion runs with.
 * @property {string | null} [digest_from] The digest the target runs now (none before its first deployment).
 * @property {string} digest_to The digest it runs after the promotion (the source environment's).
 * @property {boolean} spec_changed Whether the service's spec (apart from its image) differs from the target's current
 *   one.
 */

/**
 * The answer of a promotion: the deployment it made (none for a dry run) and its changes.
 * @typedef {object} PromoteOutcome
 * @property {PromoteChanges} changes What changes.
 * @property {Deployment | null} [deployment] The new deployment of the target environment; `null` on a dry run.
 */

/**
 * Body of `POST .../deployments/{service}/promote`.
 * @typedef {object} PromoteRequest
 * @property {boolean} [dry_run] Only say what would change; store nothing.
 * @property {string} from The environment whose current deployment is promoted.
 * @property {string | null} [note] Why.
 * @property {string} to The environment right after it in the project's order.
 */

/**
 * Credentials for pulling from one registry.
 * @typedef {object} PullAuth
 * @property {string} password The token (never logged).
 * @property {string} registry The registry's `host:port`, as image names start.
 * @property {string} username User name.
 */

/**
 * `GET /api/v1/stats/queue`: queue depth and pool use over the last hour.
 * @typedef {object} QueueHistory
 * @property {number} interval_ms Time between samples.
 * @property {QueueSample[]} samples Samples, oldest first; the last one is taken at the request.
 */

/**
 * The queue and the pool at one moment.
 * @typedef {object} QueueSample
 * @property {number} agents Connected agents.
 * @property {number} busy_slots Agent slots running an attempt.
 * @property {number} pending_runs Runs waiting for a `concurrency:` slot.
 * @property {number} queued_jobs Job attempts waiting for an agent.
 * @property {string} time When.
 * @property {number} total_slots Agent slots in all.
 */

/**
 * A project's quota and use (`kiln quota`).
 * @typedef {object} QuotaInfo
 * @property {QuotaLimits} limits Its limits (all `None` when it has no quota).
 * @property {string} project The project.
 * @property {QuotaUsage} used What it holds now.
 */

/**
 * What one project may hold on the pool at once; `None` = no limit.
 * @typedef {object} QuotaLimits
 * @property {number | null} [cpu_millis] CPU in millicores.
 * @property {number | null} [jobs] Jobs running at once.
 * @property {number | null} [memory_bytes] Memory in bytes.
 */

/**
 * What a project holds on the pool now.
 * @typedef {object} QuotaUsage
 * @property {number} cpu_millis CPU in millicores reserved by its running jobs.
 * @property {number} jobs Its jobs placed on nodes (running or about to).
 * @property {number} memory_bytes Memory in bytes reserved by its running jobs.
 * @property {number} waiting Its jobs waiting for a node.
 */

/**
 * Body of `POST /api/v1/agents`.
 * @typedef {object} RegisterAgent
 * @property {Record<string, unknown>} [attributes] Its own attributes (operators can set more, or override these, on the server).
 * @property {number} capacity How many jobs it runs at once.
 * @property {string} executor `docker` or `process`.
 * @property {string[]} [held] Leases it still runs from an earlier session (after a lost connection or a server
 *   restart): the server answers which of them to keep and which to stop.
 * @property {string} [hostname] Host name.
 * @property {NodeImage[] | null} [images] The images its engine holds (`None`: its executor has none, as the process
 *   executor); later changes come in image reports ([`ImagesReport`]).
 * @property {string} [ip] The IP the node is reached at (its host ports are published there); empty: the
 *   address the server sees the agent's requests come from.
 * @property {string} name Unique name (host name by default); re-registering a name replaces the old session
 *   and fails its leases.
 * @property {PortRange | null} [ports] Host ports it hands out for `ports:` with host port 0 (default 31000-32000).
 * @property {number} [protocol] The protocol it speaks ([`PROTOCOL`]; absent: 1).
 * @property {Resources | null} [resources] What the host has in all (none declared: the node takes any job that fits its slots).
 * @property {string} [version] Its Kiln version, for messages (`0.1.0`).
 */

/**
 * A manifest push.
 * @typedef {object} RegistryEvent
 * @property {string} [action] `push`, or `vulnerability`: newly imported advisories match this stored image.
 * @property {string} actor Who pushed.
 * @property {string[]} [advisories] A `vulnerability` event's new advisory ids.
 * @property {string} created_at When.
 * @property {string} digest Manifest digest.
 * @property {string} id Id.
 * @property {string} media_type Manifest media type.
 * @property {string} repository Repository.
 * @property {string | null} [tag] The tag pushed, if any.
 * @property {string[]} [tags] A `vulnerability` event's image's tags.
 */

/**
 * What a garbage collection freed.
 * @typedef {object} RegistryGcReport
 * @property {number} blobs Blobs deleted.
 * @property {number} bytes_freed Bytes freed.
 * @property {string[]} manifests Untagged manifests deleted (`repository@digest`).
 * @property {number} orphans Blob files no record named, deleted.
 * @property {number} uploads Abandoned uploads removed.
 */

/**
 * Asks for a garbage collection of the registry.
 * @typedef {object} RegistryGcRequest
 * @property {number | null} [grace_seconds] Leave alone what was pushed or touched within this many seconds (default 3600).
 */

/**
 * A repository of the registry (`<project>/<name>`).
 * @typedef {object} RegistryRepository
 * @property {string} created_at When its first push came.
 * @property {string} name `<project>/<name>`.
 * @property {string} project Its project.
 * @property {boolean} public Anyone may pull.
 */

/**
 * A tag of a repository.
 * @typedef {object} RegistryTag
 * @property {string} digest The manifest digest it names.
 * @property {string} tag Tag.
 */

/**
 * What a release, rollback, approval or rejection did.
 * @typedef {object} ReleaseOutcome
 * @property {string} message What happened, in words.
 * @property {string} outcome `released`, `gray`, `pending` (waits for approval), `unchanged` (nothing to release:
 *   the audience already gets these files), `promoted` (a gray release to everyone) or
 *   `rejected`.
 * @property {ConfigRelease} release The release made or decided; for `unchanged`, the one that already has the files.
 */

/**
 * Body of `POST .../apps/{app}/envs/{env}/releases`.
 * @typedef {object} ReleaseRequest
 * @property {boolean} [all] Release the gray release that is out to everyone (nothing is rendered).
 * @property {string[]} [instances] A gray release: only these instances (the `instance` consumers name) get it.
 * @property {string | null} [note] Why, kept with the release.
 */

/**
 * One render of an application in an environment (a preview: nothing is stored).
 * @typedef {object} Rendered
 * @property {string} app Application name.
 * @property {string} digest Their digest (`sha256:…`).
 * @property {string} environment Environment name.
 * @property {Record<string, string>} files The rendered files, by name.
 * @property {string} project Project name.
 */

/**
 * Answer to a batch report.
 * @typedef {object} ReportsResponse
 * @property {string[]} [cancel] Reported leases that were canceled: kill their tasks.
 * @property {string[]} [unknown] Reported leases the server does not know (lost, canceled or ended): their events were
 *   dropped; stop their tasks and report nothing more of them.
 */

/**
 * What a host offers in all.
 * @typedef {object} Resources
 * @property {number} cpu_millis CPU in millicores (1000 = one core).
 * @property {number} disk_bytes Disk in bytes (of the agent's work directory's file system).
 * @property {number} memory_bytes Memory in bytes.
 */

/**
 * Body of `POST .../deployments/{service}/{env}/rollback`.
 * @typedef {object} RollbackDeployment
 * @property {string | null} [note] Why.
 * @property {number | null} [to] The deployment to return to; default: the succeeded one before the current one.
 */

/**
 * Body of `POST .../apps/{app}/envs/{env}/rollback`.
 * @typedef {object} RollbackRequest
 * @property {string | null} [note] Why.
 * @property {number} to The release whose files come back (in a new release).
 */

/**
 * Body of `POST .../services/{service}/rollback`.
 * @typedef {object} RollbackService
 * @property {number | null} [to] The version to return to; the one before the current when absent.
 */

/**
 * A run with its stages, jobs and approvals.
 * @typedef {object} RunDetail
 * @property {string} created_at Created (triggered).
 * @property {number | null} [duration_ms] From start to end (or to now while it runs).
 * @property {string | null} [failed_job] The first of its jobs that failed or timed out (`GET /api/v1/runs/{run}/failures`
 *   says why), if one did.
 * @property {number} [failed_jobs] How many of its jobs failed or timed out.
 * @property {string | null} [finished_at] Ended.
 * @property {string | null} [group] The group it was started in (`GET /api/v1/run-groups/{group}` shows it), if any.
 * @property {string} id Id (a uuid).
 * @property {number} number Number within the pipeline, from 1.
 * @property {Record<string, unknown>} [params] Parameter values given at trigger time, as text (defaults not included: see
 *   `GET /api/v1/approvals` for a run's effective params).
 * @property {RunParent | null} [parent] The run and job that started it (a `trigger:` job), if any.
 * @property {string} pipeline Pipeline name.
 * @property {string} project Project name.
 * @property {string | null} [reason] Why it ended the way it did, if not success.
 * @property {string | null} [retry_of] The run this one retries.
 * @property {SourceInfo | null} [source] The commit it builds, when a git push or pull request started it.
 * @property {string | null} [started_at] Left the queue.
 * @property {"pending" | "scheduling" | "running" | "paused" | "success" | "failure" | "canceled" | "timeout"} state A run's state.
 * @property {string} triggered_by Who triggered it (a token's name).
 * @property {RunSummary[]} [downstream] The runs its `trigger:` jobs started (their `parent.job` names the job), oldest first.
 * @property {JobInfo[]} jobs Jobs in plan order.
 * @property {string | null} [paused_at] The stage the run waits at, when paused.
 * @property {StageInfo[]} stages Stages in order.
 */

/**
 * A run event: what `GET /api/v1/runs/events` streams (SSE `data:`) and what a project's
 * `run` webhooks receive as their body.
 * @typedef {object} RunEvent
 * @property {string} at When it was recorded.
 * @property {string} event `run.started`, `run.waiting`, `run.succeeded`, `run.failed`, `run.canceled` or
 *   `run.timed_out`.
 * @property {RunEventRun} run The run after the event.
 */

/**
 * The run a [`RunEvent`] is about.
 * @typedef {object} RunEventRun
 * @property {string} id Id (a uuid).
 * @property {number} number Number within the pipeline.
 * @property {string} pipeline Pipeline name.
 * @property {string} project Project name.
 * @property {string | null} [reason] Why it ended or paused, for people.
 * @property {string} state Its state after the event (as in [`RunSummary::state`]).
 * @property {string} triggered_by Who or what started it.
 * @property {string | null} [url] Where people see it, when the server knows its public address.
 */

/**
 * Runs started together: a `trigger:` job's list, or `POST /api/v1/run-groups`.
 * @typedef {object} RunGroup
 * @property {string} created_at When.
 * @property {string} created_by Who or what started it: a token's name, or `run <project/pipeline#n> job <job>`.
 * @property {string} id Id (a uuid).
 * @property {RunSummary[]} runs The runs, in order.
 * @property {"pending" | "scheduling" | "running" | "paused" | "success" | "failure" | "canceled" | "timeout"} state A run's state.
 */

/**
 * The run and job that started a run.
 * @typedef {object} RunParent
 * @property {string} job The `trigger:` job that started this run.
 * @property {string} name Its `project/pipeline#number`.
 * @property {string} run The upstream run's id.
 */

/**
 * A run in lists.
 * @typedef {object} RunSummary
 * @property {string} created_at Created (triggered).
 * @property {number | null} [duration_ms] From start to end (or to now while it runs).
 * @property {string | null} [failed_job] The first of its jobs that failed or timed out (`GET /api/v1/runs/{run}/failures`
 *   says why), if one did.
 * @property {number} [failed_jobs] How many of its jobs failed or timed out.
 * @property {string | null} [finished_at] Ended.
 * @property {string | null} [group] The group it was started in (`GET /api/v1/run-groups/{group}` shows it), if any.
 * @property {string} id Id (a uuid).
 * @property {number} number Number within the pipeline, from 1.
 * @property {Record<string, unknown>} [params] Parameter values given at trigger time, as text (defaults not included: see
 *   `GET /api/v1/approvals` for a run's effective params).
 * @property {RunParent | null} [parent] The run and job that started it (a `trigger:` job), if any.
 * @property {string} pipeline Pipeline name.
 * @property {string} project Project name.
 * @property {string | null} [reason] Why it ended the way it did, if not success.
 * @property {string | null} [retry_of] The run this one retries.
 * @property {SourceInfo | null} [source] The commit it builds, when a git push or pull request started it.
 * @property {string | null} [started_at] Left the queue.
 * @property {"pending" | "scheduling" | "running" | "paused" | "success" | "failure" | "canceled" | "timeout"} state A run's state.
 * @property {string} triggered_by Who triggered it (a token's name).
 */

/**
 * The workflow a run ran (`GET /api/v1/runs/{run}/source`): the pipeline's source as it was
 * when the run was created, whatever was applied since.
 * @typedef {object} RunWorkflow
 * @property {string} file The entry file's name (diagnostics name it).
 * @property {Record<string, string>} [files] Template files the workflow's `uses:` refer to, by the path written there.
 * @property {string} yaml The workflow file's text.
 */

/**
 * Body of `POST .../services/{service}/scale`.
 * @typedef {object} ScaleService
 * @property {number} replicas The new number of replicas (0 to 1000).
 */

/**
 * Body of `POST /api/v1/registry/scan`.
 * @typedef {object} ScanRequest
 * @property {string} image The image, as for `GET /api/v1/registry/vulns`.
 */

/**
 * A schedule (`on.schedule` entry) and its fires.
 * @typedef {object} ScheduleInfo
 * @property {string} cron Cron expression as written.
 * @property {string | null} [last_fired_at] When a fire last started a run.
 * @property {string | null} [last_run] The run it started: `project/pipeline#number`.
 * @property {string} missed `skip` or `run-once`: what happens to fires missed while the server was down.
 * @property {FireTime[]} next The next fire times (up to 3), the first as the scheduler holds it.
 * @property {Record<string, string>} params Param values of the runs it starts.
 * @property {string} timezone IANA time zone it is read in.
 */

/**
 * One instance a rule scrapes, as its last scrape saw it.
 * @typedef {object} ScrapeTarget
 * @property {number} duration_ms How long it took, in milliseconds.
 * @property {string | null} [error] Why the last scrape failed.
 * @property {string} instance Instance id.
 * @property {string | null} [last_scrape] When the round that last scraped it started.
 * @property {string | null} [node] The node it runs on.
 * @property {number} samples Samples the last successful scrape read.
 * @property {string} service Service name.
 * @property {number} slot Its slot.
 * @property {boolean} up Whether the last scrape succeeded.
 * @property {string} url What is read: `http://<host ip>:<host port><path>`.
 */

/**
 * One Prometheus `http_sd` target group: an instance's address and its labels.
 * @typedef {object} SdTarget
 * @property {Record<string, string>} labels `project`, `service`, `instance`, `node`, `slot`, `version`, and the service's labels
 *   (names made Prometheus-safe: other characters than letters, digits and `_` become `_`).
 * @property {string[]} targets `host:port`.
 */

/**
 * A project secret (never its value).
 * @typedef {object} Secret
 * @property {string} created_at Created.
 * @property {string} name Env name.
 * @property {string} updated_at Last set.
 */

/**
 * `GET /api/v1/info`: who the caller is and what the server runs.
 * @typedef {object} ServerInfo
 * @property {AgentInfo[]} agents Connected agents.
 * @property {string} role The caller's role.
 * @property {string} token The caller's token name.
 * @property {string} version Kiln version.
 */

/**
 * What a deployed service runs: the deployments of a service file to an environment.
 * @typedef {object} ServiceDeployed
 * @property {string} environment The environment.
 * @property {string} service The service file's name.
 */

/**
 * A service and its instances.
 * @typedef {object} ServiceInfo
 * @property {ServiceDeployed | null} [deployed] The deployments it runs, for a deployed service (`<name>-<environment>`, made by
 *   `kiln deploy`): only deploys change it. Absent otherwise.
 * @property {number} healthy Healthy instances of the desired template.
 * @property {InstanceInfo[]} instances Its instances, by slot.
 * @property {Record<string, string>} labels Its labels.
 * @property {string} name Service name.
 * @property {ServiceOwner | null} [owner] The run that owns it, for a build-scoped pool (`service-pools` of a workflow): it is
 *   deleted when that run (or job) ends. Absent for a service applied by hand.
 * @property {string} project Project name.
 * @property {number} replicas Slots.
 * @property {number} stable The last template every slot ran healthy.
 * @property {string} state `deploying` (the first version is not yet healthy everywhere), `running`, `updating`
 *   or `stopped`.
 * @property {number} template The version whose spec every slot should run.
 * @property {UpdateSettings | null} [update] How a new template replaces its instances (absent when its spec could not be read).
 * @property {string} updated_at Last change.
 * @property {number} version The latest version (every apply, scale and rollback makes one).
 * @property {SlotWait[]} waits Slots that are not what they should be, and why.
 */

/**
 * `GET /api/v1/projects/{project}/services/{service}/metrics`: the scraped series of a
 * service's instances, kept in the server's memory (an hour at most).
 * @typedef {object} ServiceMetrics
 * @property {MetricSeries[]} series Every series, by name then labels.
 */

/**
 * The run (and job) that owns a service.
 * @typedef {object} ServiceOwner
 * @property {string | null} [job] The job, for a job's own pool.
 * @property {string} pool The pool's name in the workflow.
 * @property {string} run The run's id.
 * @property {string} run_name `project/pipeline#number`.
 */

/**
 * One version of a service.
 * @typedef {object} ServiceVersion
 * @property {string} at When.
 * @property {string} by Who.
 * @property {string} kind `apply`, `scale`, `restart`, `rollback`, `auto-rollback` or `stop`.
 * @property {string | null} [note] The note given, or why it was made.
 * @property {number} replicas Replicas.
 * @property {number} template The version whose spec it runs (itself for an apply that changed the spec).
 * @property {number} version Version number, from 1.
 */

/**
 * Body of `PUT /api/v1/projects/{project}/secrets/{name}`.
 * @typedef {object} SetSecret
 * @property {string} value The value; stored encrypted, injected as env `<name>`, masked in logs.
 */

/**
 * Body of `PUT .../apps/{app}/templates/{file}`.
 * @typedef {object} SetTemplate
 * @property {string} template The template (minijinja); its syntax is checked before it is stored.
 */

/**
 * Body of `PUT .../apps/{app}/values` and `.../values/{env}`.
 * @typedef {object} SetValues
 * @property {string | null} [file] The file name diagnostics give (default `values/shared.yml`, `values/<env>.yml`).
 * @property {string} yaml A YAML map of values; checked before it is stored.
 */

/**
 * Body of `PUT .../environments/{env}/variables/{name}`.
 * @typedef {object} SetVariable
 * @property {boolean} [secret] Store it sealed and never show it (admin).
 * @property {string} value The value (a secret's must not be empty).
 */

/**
 * Makes a repository public or private.
 * @typedef {object} SetVisibility
 * @property {boolean} public Anyone may pull.
 * @property {string} repository `<project>/<name>`.
 */

/**
 * Why a slot waits.
 * @typedef {object} SlotWait
 * @property {string} reason Why.
 * @property {number} slot Slot.
 */

/**
 * The commit a run builds and what in its repository started it.
 * @typedef {object} SourceInfo
 * @property {string} author Its author.
 * @property {string | null} [branch] Branch (of a branch push; a pull request's source branch).
 * @property {string} commit The commit (40 hex digits).
 * @property {string} event `push` or `pull_request`.
 * @property {string} message Its message.
 * @property {string} provider `github`, `gitlab` or `gitea`.
 * @property {number | null} [pull_request] The pull/merge request number, when one started the run.
 * @property {string} ref The full ref (`refs/heads/main`).
 * @property {string} repository The repository (`owner/name`).
 * @property {string | null} [tag] Tag (of a tag push).
 * @property {string | null} [target_branch] The pull/merge request's target branch.
 */

/**
 * A stage of a run.
 * @typedef {object} StageInfo
 * @property {ApprovalInfo | null} [decision] Who decided, and when.
 * @property {string | null} [description] For approval stages: the question shown to approvers.
 * @property {string | null} [gate] For approval stages: `pending`, `waiting`, `approved`, `rejected`, `skipped` or
 *   `canceled`.
 * @property {string} kind `jobs` or `approval`.
 * @property {string} name Name.
 */

/**
 * Body of `POST /api/v1/run-groups`: pipelines started together as one group.
 * @typedef {object} StartGroup
 * @property {Record<string, string>} [params] Param values as text, given to every pipeline that declares them (a pipeline that
 *   does not declare one does not get it).
 * @property {string[]} pipelines The pipelines, `project/pipeline`, in order (at least one).
 */

/**
 * A token (never its secret, except once on creation).
 * @typedef {object} Token
 * @property {string} created_at Created.
 * @property {string} id Id.
 * @property {string | null} [last_used_at] Last used.
 * @property {string} name Name.
 * @property {string | null} [project] Project it is limited to.
 * @property {string | null} [revoked_at] Revoked.
 * @property {string} role Role.
 */

/**
 * One trigger of one pipeline.
 * @typedef {object} TriggerInfo
 * @property {string} details One line for people: `*∕5 * * * * in Asia/Shanghai, missed: skip`, `app tags v*`.
 * @property {ImageTriggerInfo | null} [image] For `image`: the repository and tag globs.
 * @property {TriggerKind} kind What kind of event starts runs.
 * @property {string} pipeline Pipeline name.
 * @property {string} project Project name.
 * @property {ScheduleInfo | null} [schedule] For `schedule`: the expression, zone, params, policy, next and last fires.
 */

/**
 * The kinds of trigger.
 * @typedef {"api" | "image" | "schedule" | "push" | "pull_request"} TriggerKind
 */

/**
 * Body of `POST /api/v1/projects/{project}/pipelines/{pipeline}/runs`.
 * @typedef {object} TriggerRequest
 * @property {Record<string, string>} [params] Parameter values as text (`count=3`, `dry_run=true`); checked against `params`.
 */

/**
 * Body of `PATCH /api/v1/projects/{project}/environments/{env}`: what to change.
 * @typedef {object} UpdateEnvironment
 * @property {string | null} [after] The environment before it; `""` makes it a first one; absent: unchanged.
 * @property {boolean | null} [protected] Whether releases there need a second person's approval; absent: unchanged.
 */

/**
 * A service's rolling-update settings: as its file writes them, and resolved for its
 * replicas as the controller uses them.
 * @typedef {object} UpdateSettings
 * @property {number} deadline_ms An update not healthy by then rolls back by itself, in milliseconds.
 * @property {string} max_surge `max-surge` as written: a count (`1`) or a percentage of replicas (`25%`).
 * @property {string} max_unavailable `max-unavailable` as written.
 * @property {number} surge Instances that may run above `replicas` during an update, for the current replicas.
 * @property {number} unavailable Instances of `replicas` that may be unavailable during an update, for the current
 *   replicas.
 */

/**
 * Reserved amounts times seconds, summed over attempts.
 * @typedef {object} UsageAmounts
 * @property {number} attempts Finished attempts.
 * @property {number} cpu_core_seconds Reserved CPU cores × seconds.
 * @property {number} disk_gib_seconds Reserved disk GiB × seconds.
 * @property {number} memory_gib_seconds Reserved memory GiB × seconds.
 * @property {number} seconds Their seconds (each attempt's rounded up to the second).
 */

/**
 * One finished job attempt's usage record.
 * @typedef {object} UsageAttempt
 * @property {number} attempt Attempt (1 for the first).
 * @property {number} cpu_millis CPU reserved, in thousandths of a core.
 * @property {number} disk_bytes Disk reserved, in bytes.
 * @property {string} ended_at When the server recorded its end.
 * @property {string} environment The job's `environment:` (`""` without one).
 * @property {string} job Job id.
 * @property {number} memory_bytes Memory reserved, in bytes.
 * @property {string} node The node it ran on.
 * @property {string} node_group The node's `group` attribute (`""` without one).
 * @property {string} pipeline Pipeline name.
 * @property {string} run Run id.
 * @property {number} seconds Whole seconds from start to end, rounded up.
 * @property {string} started_at When the server heard it started.
 */

/**
 * How usage totals are grouped.
 * @typedef {"day" | "pipeline" | "node-group"} UsageBy
 */

/**
 * The totals of one group.
 * @typedef {object} UsageGroup
 * @property {number} attempts Finished attempts.
 * @property {number} cpu_core_seconds Reserved CPU cores × seconds.
 * @property {number} disk_gib_seconds Reserved disk GiB × seconds.
 * @property {number} memory_gib_seconds Reserved memory GiB × seconds.
 * @property {number} seconds Their seconds (each attempt's rounded up to the second).
 * @property {string} key The day (`YYYY-MM-DD`), pipeline or node group.
 */

/**
 * `GET /api/v1/projects/{project}/usage`: a project's usage of attempts that ended in
 * `[since, until)`, grouped, with the records it sums.
 * @typedef {object} UsageReport
 * @property {UsageAttempt[]} attempts The attempts summed, oldest end first.
 * @property {UsageBy} by How `groups` are grouped.
 * @property {UsageGroup[]} groups Totals per group, by key.
 * @property {string} project Project name.
 * @property {string} since Start of the window (inclusive).
 * @property {UsageAmounts} total Totals of the whole window.
 * @property {string} until End of the window (exclusive).
 */

/**
 * A stored image that newly imported advisories match.
 * @typedef {object} VulnerabilityNotice
 * @property {string[]} advisories The new advisories' ids.
 * @property {string} digest The image's manifest digest.
 * @property {string} repository Repository.
 * @property {string[]} tags The image's tags in it.
 */

/**
 * A project's webhook: the events it takes are POSTed to it as JSON.
 * @typedef {object} Webhook
 * @property {string} created_at When it was added.
 * @property {string[]} [events] What it takes: `push` (registry pushes), `run` (runs started, waiting, ended),
 *   `vulnerability` (newly imported advisories match a stored image).
 * @property {string} id Id.
 * @property {string} project Project.
 * @property {string | null} [secret] The signing secret: in the answer to its creation only, never again.
 * @property {boolean} [signed] Whether its deliveries carry `X-Kiln-Signature`.
 * @property {string} url Target URL.
 */

export {};
