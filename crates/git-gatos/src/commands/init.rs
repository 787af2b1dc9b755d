//! `git gatos init`.

use gatos::Error;

use super::Ctx;
use crate::output::Output;

/// Prepares the repository and prints what it holds.
pub fn run(ctx: &Ctx, out: &mut Output) -> Result<(), Error> {
    let (_g, done) = gatos::init::init(&ctx.cwd, ctx.open.clone())?;
    out.row(&done, |w| {
        writeln!(w, "node {}", done.node)?;
        writeln!(w, "identity {} <{}>", done.name, done.email)?;
        write!(
            w,
            "key {} ({} {})",
            done.key,
            if done.created_key {
                "created at"
            } else {
                "found at"
            },
            done.key_path.display()
        )
    })
}
