//! Score and mask files: safetensors with one tensor per block Linear under its checkpoint name
//! and what made them (JSON) in the metadata, so a file made for another model is refused.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ScoreInfo, Scores};
use crate::error::{Error, Result};
use crate::io::safetensors::{OutData, Sidecar, write};
use crate::model::{Architecture, LinearId};

const FORMAT: &str = "scalpel-scores/1";

/// Writes `(Linear, shape, data)` tensors with `info` as metadata under `format`.
pub(crate) fn write_per_linear<I: Serialize>(
    format: &str,
    info: &I,
    architecture: Architecture,
    tensors: Vec<(LinearId, Vec<usize>, OutData<'_>)>,
) -> Result<Vec<u8>> {
    let tensors = tensors
        .into_iter()
        .map(|(id, shape, data)| (id.checkpoint_name(architecture), shape, data))
        .collect();
    let info = serde_json::to_string(info)
        .map_err(|e| Error::InvalidInput(format!("encoding {format} metadata: {e}")))?;
    write(
        tensors,
        HashMap::from([("format".into(), format.into()), ("info".into(), info)]),
    )
}

/// Reads a file written by [`write_per_linear`]: its info and `read(sidecar, name)` of every
/// tensor, keyed by Linear; `what` names the kind of file in errors.
pub(crate) fn read_per_linear<I: DeserializeOwned, T>(
    file: &str,
    bytes: &[u8],
    format: &str,
    what: &str,
    architecture: Architecture,
    read: impl Fn(&Sidecar<'_>, &str) -> Result<T>,
) -> Result<(I, BTreeMap<LinearId, T>)> {
    let sidecar = Sidecar::parse(file, bytes)?;
    let found = sidecar.require("format", what)?;
    if found != format {
        return Err(Error::format(
            file,
            format!("format `{found}` is not a Scalpel {what} file"),
        ));
    }
    let info = serde_json::from_str(sidecar.require("info", what)?)
        .map_err(|e| Error::format(file, format!("{what} info: {e}")))?;
    let mut tensors = BTreeMap::new();
    for name in sidecar.names() {
        let id = LinearId::from_checkpoint_name(&name, architecture).ok_or_else(|| {
            Error::format(
                file,
                format!("`{name}` is not a block Linear of a {architecture:?} model"),
            )
        })?;
        tensors.insert(id, read(&sidecar, &name)?);
    }
    Ok((info, tensors))
}

impl Scores {
    pub fn to_safetensors(&self, architecture: Architecture) -> Result<Vec<u8>> {
        let tensors = self
            .linears
            .iter()
            .map(|(&id, s)| (id, s.shape.clone(), OutData::F32(&s.data)))
            .collect();
        write_per_linear(FORMAT, &self.info, architecture, tensors)
    }

    /// Reads a score file; `file` names it in errors. Check it with [`Scores::check_for`].
    pub fn from_safetensors(file: &str, bytes: &[u8], architecture: Architecture) -> Result<Self> {
        let (info, linears) = read_per_linear::<ScoreInfo, _>(
            file,
            bytes,
            FORMAT,
            "scores",
            architecture,
            |s, name| {
                let scores = s.f32(name)?;
                if scores.data.iter().any(|v| !v.is_finite()) {
                    return Err(Error::NonFinite(format!("{file}: `{name}`")));
                }
                Ok(scores)
            },
        )?;
        Ok(Self { info, linears })
    }
}
