// @ts-check
// Kiln web UI: a small single-page app over the REST API (/api/v1). Hand-written native ES
// modules, no dependencies, no build step. This is the entry module: it registers every
// page's routes (the page registry, lib/router.js), wires the API to the connection banner
// (conn.js) and draws the first page.
//
//   lib/     what pages share: api (calls, errors, event streams), dom (elements, badges),
//            format (durations, times, sizes), router (routes, the page on screen),
//            session (who is signed in), plot, graph (the run graph), runs, triage (why
//            jobs failed; failed job and params of run tables), project, stats,
//            api-types (JSDoc types generated from docs/openapi.json)
//   pages/   one module per page or group of pages, each exporting its `routes`
//
// A new page: a module in pages/ exporting `routes`, imported and registered below, and
// named in crates/kiln-ui/src/lib.rs' asset list (a test checks every file is).

import { createConnection } from './conn.js';
import { connect } from './lib/api.js';
import { styleFromData, toast } from './lib/dom.js';
import { current, register, render, signOut, start } from './lib/router.js';
import { setSignOut } from './lib/session.js';
import * as log from './log_view.js';
import * as approvals from './pages/approvals.js';
import * as config from './pages/config.js';
import * as deploys from './pages/deploys.js';
import * as environments from './pages/environments.js';
import * as pipelines from './pages/pipelines.js';
import * as pool from './pages/pool.js';
import * as projects from './pages/projects.js';
import * as registry from './pages/registry.js';
import * as run from './pages/run.js';
import * as runs from './pages/runs.js';
import * as services from './pages/services.js';
import * as signin from './pages/signin.js';

register(
  signin.routes,
  pipelines.routes,
  runs.routes,
  run.routes,
  log.routes,
  approvals.routes,
  services.routes,
  pool.routes,
  registry.routes,
  projects.routes,
  environments.routes,
  config.routes,
  deploys.routes,
);

// The connection to the server: the banner while it is away. When the server answers again
// after it was away, the page on screen is loaded again (unless it holds unsaved changes).
const conn = createConnection({
  onBack: () => {
    toast('Connected to the server again');
    const p = current();
    if (p && p.unsaved && p.unsaved()) return;
    render();
  },
});
connect({ conn, unauthorized: signOut });
setSignOut(() => signOut());
styleFromData();
start();
render();
