//! `git gatos jobs enqueue`.

use std::io::Read as _;

use gatos::Error;
use gatos::jobs::manifest::{self, Input, Overrides};
use gatos_types::ErrorCode;

use super::super::{Ctx, api, parse};
use super::print_enqueued;
use crate::cli::EnqueueArgs;
use crate::output::{Output, usage};

/// Reads a manifest file (`-`: stdin).
pub fn read_manifest(path: &std::path::Path) -> Result<Input, Error> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| {
            Error::new(
                ErrorCode::InvalidInput,
                format!("reading the manifest from stdin: {e}"),
            )
        })?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorCode::InvalidInput,
                format!("reading {}: {e}", path.display()),
            )
        })?
    };
    manifest::parse_text(&text)
}

fn pair(flag: &str, s: &str) -> Result<(String, String), Error> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| usage(format!("{flag} takes K=V, not {s:?}")))
}

/// Enqueues from `-- CMD ARG…` or `--manifest`, with flags overriding the manifest.
pub fn run(ctx: &Ctx, out: &mut Output, a: &EnqueueArgs) -> Result<(), Error> {
    let file = a.manifest.as_deref().map(read_manifest).transpose()?;
    let overrides = Overrides {
        argv: (!a.command.is_empty()).then(|| a.command.clone()),
        queue: a.queue.as_deref().map(parse).transpose()?,
        caps: a.caps.iter().map(|c| parse(c)).collect::<Result<_, _>>()?,
        timeout: a.timeout.clone().map(serde_json::Value::String),
        max_attempts: a.max_attempts,
        priority: a.priority,
        env: a
            .env
            .iter()
            .map(|e| pair("--env", e))
            .collect::<Result<_, _>>()?,
        run_after: a.run_after.clone(),
        cwd: a.cwd.clone(),
        outputs: a.outputs.clone(),
        labels: a
            .labels
            .iter()
            .map(|l| pair("--label", l))
            .collect::<Result<_, _>>()?,
        inputs: a
            .inputs
            .as_deref()
            .map(|i| {
                gatos_types::jcs::parse(i.as_bytes())
                    .map_err(|e| Error::new(ErrorCode::InvalidInput, format!("--inputs: {e}")))
            })
            .transpose()?,
        checkout: if a.no_checkout {
            Some(serde_json::Value::Bool(false))
        } else {
            a.checkout.clone().map(serde_json::Value::String)
        },
    };
    let row = ctx
        .service()?
        .jobs_enqueue_input(&ctx.actor()?, file, overrides)
        .map_err(api)?;
    print_enqueued(out, &row)
}
