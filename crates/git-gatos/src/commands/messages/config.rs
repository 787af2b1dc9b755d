//! `git gatos messages config`.

use gatos::Error;
use gatos::messages::ConfigChange;
use gatos_types::{Dur, ErrorCode, Topic};

use super::super::{Ctx, parse};
use crate::cli::ConfigArgs;
use crate::output::Output;

fn optional<T>(
    v: &Option<String>,
    what: &str,
    f: impl Fn(&str) -> Result<T, Error>,
) -> Result<Option<Option<T>>, Error> {
    match v.as_deref() {
        None => Ok(None),
        Some("off" | "none") => Ok(Some(None)),
        Some(s) => f(s)
            .map(|x| Some(Some(x)))
            .map_err(|e| e.context(format_args!("--{what}"))),
    }
}

fn number(s: &str) -> Result<u64, Error> {
    s.parse().map_err(|_| {
        Error::new(
            ErrorCode::InvalidInput,
            format!("{s:?} is not a whole number"),
        )
    })
}

/// Shows or changes a topic's settings.
pub fn run(ctx: &Ctx, out: &mut Output, a: &ConfigArgs) -> Result<(), Error> {
    let topic: Topic = parse(&a.topic)?;
    let change = ConfigChange {
        max_messages: a.max_messages,
        max_bytes: a.max_bytes,
        ttl: optional(&a.ttl, "ttl", |s| Ok(Dur::parse(s)?.as_secs()))?,
        retain_messages: optional(&a.retain_messages, "retain-messages", number)?,
        retain_bytes: optional(&a.retain_bytes, "retain-bytes", number)?,
        sign: a.sign.as_deref().map(|s| s == "on"),
    };
    let cfg = ctx.gatos()?.messages().configure(&topic, &change)?;
    let show = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    out.row(&cfg, |w| {
        write!(
            w,
            "{}: max-messages {} max-bytes {} ttl {} retain-messages {} retain-bytes {} sign {}",
            cfg.topic,
            cfg.max_messages,
            cfg.max_bytes,
            cfg.ttl
                .map_or_else(|| "-".to_owned(), |s| Dur::from_secs(s).to_string()),
            show(cfg.retain_messages),
            show(cfg.retain_bytes),
            if cfg.sign || gatos::messages::chain::is_signed_topic(&cfg.topic) {
                "on"
            } else {
                "off"
            }
        )
    })
}
