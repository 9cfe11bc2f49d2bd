//! The compiler's driver: reads the entry file through the [`Loader`], follows `uses:`
//! templates, and gathers every diagnostic of every file in one pass.
//!
//! A file with `uses` runs its template: the template is compiled on its own (its problems
//! name the template file), then the caller's `with` values become the defaults of the
//! template's params, and the caller's `name`, `env`, `timeout` and `concurrency` apply over
//! it.

use crate::check::{Checker, bind_with};
use crate::diag::{Diagnostic, Severity};
use crate::plan::Plan;
use crate::raw::RawWorkflow;
use crate::read::Reader;
use crate::yaml::{self, Pos};
use crate::{Compiled, Loader, Source};

/// How deep templates may nest: the entry file's template is depth 1.
pub const MAX_TEMPLATE_DEPTH: usize = 4;

struct Compiler<'l> {
    loader: &'l dyn Loader,
    diags: Vec<Diagnostic>,
    /// Files in the order they were read (diagnostics are sorted by it).
    files: Vec<String>,
}

/// Compiles the workflow file `entry` (read with `loader.load("", entry)`).
pub fn compile(entry: &str, loader: &dyn Loader) -> Compiled {
    let mut c = Compiler { loader, diags: Vec::new(), files: vec![entry.to_owned()] };
    let plan = match loader.load("", entry) {
        Ok(source) => {
            c.files.push(source.name.clone());
            let mut chain = vec![source.name.clone()];
            c.file(&source, &mut chain)
        }
        Err(message) => {
            c.error(
                entry,
                Pos { line: 1, column: 1 },
                format!("can not read the workflow: {message}"),
            );
            None
        }
    };
    let Compiler { mut diags, files, .. } = c;
    let rank = |file: &str| files.iter().position(|f| f == file).unwrap_or(files.len());
    diags.sort_by_key(|d| (rank(&d.file), d.line, d.column));
    let failed = diags.iter().any(|d| d.severity == Severity::Error);
    Compiled { plan: if failed { None } else { plan }, diagnostics: diags }
}

impl Compiler<'_> {
    fn error(&mut self, file: &str, pos: Pos, message: String) {
        self.diags.push(Diagnostic {
            severity: Severity::Error,
            file: file.to_owned(),
            line: pos.line,
            column: pos.column,
            message,
        });
    }

    /// Compiles one file; `chain` names the files being compiled, this one last.
    fn file(&mut self, source: &Source, chain: &mut Vec<String>) -> Option<Plan> {
        let name = source.name.as_str();
        let (root, problems) = yaml::parse(&source.text);
        let had_problems = !problems.is_empty();
        for p in problems {
            self.error(name, p.pos, p.message);
        }
        let Some(root) = root else {
            if !had_problems {
                self.error(
                    name,
                    Pos { line: 1, column: 1 },
                    "the file is empty: expected a workflow with name and stages".into(),
                );
            }
            return None;
        };
        let raw = Reader::new(name, &mut self.diags).workflow(&root)?;
        match &raw.uses {
            None => Some(Checker::new(name, &mut self.diags).plan(&raw)),
            Some(_) => self.caller(&raw, source, chain),
        }
    }

    /// A file with `uses`: compiles the template, then applies `with`, `name`, `env`,
    /// `timeout` and `concurrency` over it.
    fn caller(
        &mut self,
        raw: &RawWorkflow,
        source: &Source,
        chain: &mut Vec<String>,
    ) -> Option<Plan> {
        let name = source.name.as_str();
        let uses = raw.uses.as_ref()?;
        if let Some(stages) = &raw.stages {
            self.error(
                name,
                stages.at.pos,
                "a file with 'uses' runs the template's stages; it can not have stages of its own"
                    .into(),
            );
        }
        if let Some((key, _)) = raw.service_pools.as_ref().and_then(|p| p.0.first()) {
            self.error(
                name,
                key.at.pos,
                "a file with 'uses' runs the template's service-pools; it can not declare its own"
                    .into(),
            );
        }
        if let Some(prepull) = &raw.prepull {
            self.error(
                name,
                prepull.at.pos,
                "a file with 'uses' runs the template's prepull; it can not declare its own".into(),
            );
        }
        if let Some((key, _)) = raw.params.as_ref().and_then(|p| p.0.first()) {
            self.error(
                name,
                key.at.pos,
                "a file with 'uses' can not declare params: the template's params apply; give \
                 their values with 'with'"
                    .into(),
            );
        }
        if chain.len() > MAX_TEMPLATE_DEPTH {
            self.error(
                name,
                uses.at.pos,
                format!(
                    "templates may nest at most {MAX_TEMPLATE_DEPTH} deep: {} -> {}",
                    chain.join(" -> "),
                    uses.value
                ),
            );
            return None;
        }
        let template = match self.loader.load(name, &uses.value) {
            Ok(t) => t,
            Err(message) => {
                self.error(
                    name,
                    uses.at.pos,
                    format!("can not read template '{}': {message}", uses.value),
                );
                return None;
            }
        };
        if chain.contains(&template.name) {
            self.error(
                name,
                uses.at.pos,
                format!("template cycle: {} -> {}", chain.join(" -> "), template.name),
            );
            return None;
        }
        if !self.files.contains(&template.name) {
            self.files.push(template.name.clone());
        }
        chain.push(template.name.clone());
        let plan = self.file(&template, chain);
        chain.pop();
        let mut plan = plan?;

        let mut checker = Checker::new(name, &mut self.diags);
        if let Some(with) = &raw.with {
            bind_with(&mut checker, with, &mut plan.params, &template.name);
        }
        if let Some(env) = &raw.env {
            for (key, _) in &env.0 {
                if let Some(pool) = plan.pools.iter().find(|p| p.export.contains_key(&key.value)) {
                    checker.error(
                        key.at.pos,
                        format!(
                            "env '{}' is also exported by the template's service pool '{}': set \
                             it in one place",
                            key.value, pool.name
                        ),
                    );
                }
            }
            let env = checker.global_env(env, &plan.params);
            plan.env.extend(env);
        }
        if let Some(t) = &raw.timeout {
            plan.timeout = checker.duration(t, "timeout").or(plan.timeout);
        }
        if let Some(c) = &raw.concurrency {
            plan.concurrency = checker.concurrency(c).or(plan.concurrency);
            plan.concurrency_group = raw
                .concurrency_group
                .as_ref()
                .and_then(|g| checker.concurrency_group(g, &plan.params));
        }
        if let Some(source) = &raw.source {
            plan.source = checker.source(source);
        }
        if let Some(on) = &raw.on {
            plan.triggers = checker.triggers(on, &plan.params);
        }
        checker.git_triggers_need_source(&plan.triggers, plan.source.as_ref(), raw.on.as_ref());
        plan.name = raw.name.value.clone();
        Some(plan)
    }
}
