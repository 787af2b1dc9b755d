//! `git gatos jobs why ID [--queue Q …] [--cap C …]`: what keeps a pending job from
//! running, checked against a worker's options (`jobs.why`).
//!
//! Exit 0 whether or not something blocks (the answer is the report); 1 for a job that
//! does not exist.

use gatos::Error;
use gatos::worker::Secrets;
use gatos_api::types::WhyParams;
use gatos_types::Ulid;

use super::super::{Ctx, api, parse};
use crate::cli::WhyArgs;
use crate::output::Output;

/// Runs `jobs why`.
pub fn run(ctx: &Ctx, out: &mut Output, a: &WhyArgs) -> Result<(), Error> {
    let secrets = if a.secret.is_empty()
        && a.claim.secrets.is_none()
        && a.claim.secrets_dir.is_none()
        && a.claim.secret_env.is_empty()
    {
        None
    } else {
        // The worker's own sources, read here for their names only.
        let mut names = Secrets::load(
            a.claim.secrets.as_deref(),
            a.claim.secrets_dir.as_deref(),
            &a.claim.secret_env,
        )?
        .names();
        names.extend(a.secret.iter().cloned());
        Some(names)
    };
    let r = ctx
        .service()?
        .jobs_why(WhyParams {
            id: parse::<Ulid>(&a.id)?,
            queues: a
                .claim
                .queues
                .iter()
                .map(|q| parse(q))
                .collect::<Result<_, _>>()?,
            caps: a
                .claim
                .caps
                .iter()
                .map(|c| parse(c))
                .collect::<Result<_, _>>()?,
            secrets,
            allow_untrusted_enqueuers: a.claim.allow_untrusted_enqueuers,
        })
        .map_err(api)?;
    out.row(&r, |w| {
        if let Some(note) = &r.note {
            return write!(w, "job {} is {note}", r.id);
        }
        // One line per condition that blocks, then those not checked (secrets).
        let mut lines = Vec::new();
        for (want, label) in [(Some(true), "blocks "), (None, "unknown")] {
            for c in r.conditions.iter().filter(|c| c.blocks == want) {
                lines.push(format!("{label}  {:<12} {}", c.kind.as_str(), c.detail));
            }
        }
        if r.claimable {
            lines.push("nothing blocks: a worker with these options would claim it now".to_owned());
        }
        write!(w, "{}", lines.join("\n"))
    })
}
