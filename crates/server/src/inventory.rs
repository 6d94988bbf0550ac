//! The inventory API: each system's installed packages, as its collector
//! last listed them.
//!
//! `PUT /v1/systems/{system}/inventory` replaces the snapshot; an unchanged
//! list writes nothing, so a collector may send it on every run. `GET`
//! reads it back. The snapshots are records of kind `inventory`, so every
//! change is kept with who sent it and when, and a report as of an instant
//! reads the list as it stood then.

use crate::compliance::RevisionOut;
use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::Json;
use patchaudit_compliance::{Inventory, RawInventory, RawPackage};
use patchaudit_domain::{FieldError, SystemId, Timestamp};
use patchaudit_store::compliance as records;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One installed package as clients send it and the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstalledPackageWire {
    /// The package name; on Windows, the KB id.
    #[schema(example = "openssl")]
    pub name: Option<String>,
    /// The installed version, as the package manager writes it
    /// (`[epoch:]version[-revision]`; `installed` for Windows hotfixes).
    #[schema(example = "3.0.11-1~deb12u2")]
    pub version: Option<String>,
    /// The architecture, where the format has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "amd64")]
    pub arch: Option<String>,
}

/// A system's installed packages.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InventoryIn {
    /// `deb`, `rpm` or `windows`: how versions compare, and which
    /// advisories' ecosystems can match.
    #[schema(example = "deb")]
    pub format: Option<String>,
    /// Every installed package (at most 100,000).
    #[serde(default, deserialize_with = "crate::wire::objects")]
    pub packages: Vec<InstalledPackageWire>,
}

/// A system's inventory as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct InventoryOut {
    /// The system.
    pub system: String,
    /// `deb`, `rpm` or `windows`.
    pub format: String,
    /// How many packages it lists.
    pub package_count: u64,
    /// When the server first recorded this package list (RFC 3339, UTC):
    /// since then the system's packages have been as listed.
    pub recorded_at: String,
    /// The revision that holds it; `changed` says whether this request wrote it.
    pub revision: RevisionOut,
    /// The packages, by name, architecture and version. Left out of the
    /// answer to a `PUT`, which the client already has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<InstalledPackageWire>>,
}

/// The API's view of `system`'s inventory `inv`, held by revision `rec`;
/// with its package list if `full`. Shared with the CLI's local mode.
pub fn out(system: String, inv: &Inventory, rec: &records::Record, full: bool) -> InventoryOut {
    InventoryOut {
        system,
        format: inv.format.as_str().to_owned(),
        package_count: inv.packages.len() as u64,
        // The revision's time, not the parse time: an unchanged list keeps
        // the revision that first recorded it.
        recorded_at: rec.changed_at.to_rfc3339(),
        revision: RevisionOut::from(rec),
        packages: full.then(|| {
            inv.packages
                .iter()
                .map(|p| InstalledPackageWire {
                    name: Some(p.name.clone()),
                    version: Some(p.version.clone()),
                    arch: p.arch.clone(),
                })
                .collect()
        }),
    }
}

/// Validates an inventory document, reporting every problem at once.
pub fn parse(input: InventoryIn, now: Timestamp) -> Result<Inventory, Vec<FieldError>> {
    Inventory::parse(
        RawInventory {
            format: input.format,
            packages: input
                .packages
                .into_iter()
                .map(|p| RawPackage {
                    name: p.name,
                    version: p.version,
                    arch: p.arch,
                })
                .collect(),
        },
        now,
    )
}

fn system_id(system: &str) -> Result<SystemId, ApiError> {
    SystemId::parse(system.to_owned()).map_err(|(c, m)| {
        ApiError::InvalidDocument(vec![FieldError::new("system", c, format!("system {m}"))])
    })
}

/// Replaces a system's installed-package inventory. Needs the `ingest`
/// scope, and a token limited to some systems may only send theirs. The
/// same list again (in any order) writes nothing and answers `changed: false`.
#[utoipa::path(put, path = "/v1/systems/{system}/inventory", tag = "compliance",
    params(("system" = String, Path, description = "The system id")),
    request_body = InventoryIn,
    responses(
        (status = 200, description = "The inventory as stored, without its package list", body = InventoryOut),
        (status = 400, description = "The body is not well-formed JSON of the documented shape; the problem names the line and column", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token may not write for this system", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received within the body timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over its limit", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule; every problem is listed with its field, such as `packages[3].version`", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn put_inventory(
    State(st): State<AppState>,
    Path(system): Path<String>,
    crate::auth::Caller(caller): crate::auth::Caller,
    body: Body,
) -> Result<Json<InventoryOut>, ApiError> {
    let crate::wire::Object(input) =
        crate::compliance::json_body::<crate::wire::Object<InventoryIn>>(&st, body).await?;
    let id = system_id(&system);
    let inv = parse(input, Timestamp::now());
    let (id, inv) = match (id, inv) {
        (Ok(id), Ok(inv)) => (id, inv),
        (id, inv) => {
            let mut errors = Vec::new();
            if let Err(ApiError::InvalidDocument(e)) = id {
                errors.extend(e);
            }
            if let Err(e) = inv {
                errors.extend(e);
            }
            return Err(ApiError::InvalidDocument(errors));
        }
    };
    crate::auth::check_system(&*st.store, &caller.token, id.as_str()).await?;
    let rec = records::put_inventory(&*st.store, &id, &inv, &caller.label()).await?;
    Ok(Json(out(system, &inv, &rec, false)))
}

/// A system's latest installed-package inventory, with its package list.
#[utoipa::path(get, path = "/v1/systems/{system}/inventory", tag = "compliance",
    params(("system" = String, Path, description = "The system id")),
    responses(
        (status = 200, description = "The inventory", body = InventoryOut),
        (status = 404, description = "The system never sent an inventory", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn get_inventory(
    State(st): State<AppState>,
    Path(system): Path<String>,
) -> Result<Json<InventoryOut>, ApiError> {
    match records::inventory_of(&*st.store, &system).await? {
        Some((inv, rec)) => Ok(Json(out(system, &inv, &rec, true))),
        None => Err(ApiError::NotFound(format!(
            "system {system:?} has not sent an inventory"
        ))),
    }
}

/// The inventory routes.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new().routes(routes!(get_inventory, put_inventory))
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchaudit_domain::ErrorCode;

    #[test]
    fn every_problem_is_named_by_its_field() {
        let input: InventoryIn = serde_json::from_str(
            r#"{"format":"deb","packages":[{"name":"bash","version":"5.2-1"},{"name":"x y","version":"1:"},{"version":"1"}]}"#,
        )
        .unwrap();
        let errors = parse(input, Timestamp::now()).unwrap_err();
        let fields: Vec<(&str, ErrorCode)> =
            errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            fields,
            [
                ("packages[1].name", ErrorCode::Format),
                ("packages[1].version", ErrorCode::Format),
                ("packages[2].name", ErrorCode::Required),
            ]
        );
    }

    #[test]
    fn unknown_fields_and_non_objects_are_refused() {
        assert!(serde_json::from_str::<InventoryIn>(r#"{"format":"deb","taken":1}"#).is_err());
        assert!(serde_json::from_str::<InventoryIn>(
            r#"{"format":"deb","packages":[["bash","1"]]}"#
        )
        .is_err());
    }
}
