//! `manifests.*`: the manifest registry.

use std::sync::Arc;

use gatos::jobs::manifest;
use gatos_rpc::RpcError;
use gatos_rpc::message::{Params, result};
use gatos_rpc::methods::{
    ManifestListResult, ManifestPutParams, ManifestPutResult, ManifestRefParams, NoParams,
};
use serde_json::value::RawValue;

use super::blocking;
use crate::connection::Conn;

/// `manifests.put {name, manifest}` → `{name, version, content_id, manifest, changed}`.
pub async fn put(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: ManifestPutParams = params.parse()?;
    let gatos = conn.shared.gatos.clone();
    let put = blocking(move || {
        gatos
            .manifests()
            .put(&p.name, manifest::from_value(p.manifest)?)
    })
    .await?;
    result(&ManifestPutResult {
        row: put.row,
        changed: put.changed,
    })
}

/// `manifests.get {name, version?}`.
pub async fn get(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: ManifestRefParams = params.parse()?;
    let gatos = conn.shared.gatos.clone();
    let row = blocking(move || gatos.manifests().get(&p.name, p.version)).await?;
    result(&row)
}

/// `manifests.list {}`.
pub async fn list(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let _: NoParams = params.parse()?;
    let gatos = conn.shared.gatos.clone();
    let manifests = blocking(move || gatos.manifests().list()).await?;
    result(&ManifestListResult { manifests })
}

/// `manifests.run {name, version?}` → `{id, content_id, commit, state}`.
pub async fn run(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: ManifestRefParams = params.parse()?;
    let gatos = conn.shared.gatos.clone();
    let row = blocking(move || gatos.manifests().run(&p.name, p.version)).await?;
    conn.shared.watchers.poke(&gatos::jobs::events_topic());
    result(&row)
}
