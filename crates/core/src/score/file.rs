//! Score files: safetensors with one `F32` tensor per block Linear under its checkpoint name and
//! the [`ScoreInfo`] as JSON metadata, so a sweep can reuse scores and a mismatch is caught.

use std::collections::{BTreeMap, HashMap};

use super::{ScoreInfo, Scores};
use crate::error::{Error, Result};
use crate::io::safetensors::{OutData, Sidecar, write};
use crate::model::{Architecture, LinearId};

const FORMAT: &str = "scalpel-scores/1";

impl Scores {
    pub fn to_safetensors(&self, architecture: Architecture) -> Result<Vec<u8>> {
        let tensors = self
            .linears
            .iter()
            .map(|(id, s)| {
                (
                    id.checkpoint_name(architecture),
                    s.shape.clone(),
                    OutData::F32(&s.data),
                )
            })
            .collect();
        let info = serde_json::to_string(&self.info)
            .map_err(|e| Error::InvalidInput(format!("encoding the score info: {e}")))?;
        write(
            tensors,
            HashMap::from([("format".into(), FORMAT.into()), ("info".into(), info)]),
        )
    }

    /// Reads a score file; `file` names it in errors. Check it with [`Scores::check_for`].
    pub fn from_safetensors(file: &str, bytes: &[u8], architecture: Architecture) -> Result<Self> {
        let sidecar = Sidecar::parse(file, bytes)?;
        let format = sidecar.require("format", "scores")?;
        if format != FORMAT {
            return Err(Error::format(
                file,
                format!("format `{format}` is not Scalpel scores"),
            ));
        }
        let info: ScoreInfo = serde_json::from_str(sidecar.require("info", "scores")?)
            .map_err(|e| Error::format(file, format!("score info: {e}")))?;
        let mut linears = BTreeMap::new();
        for name in sidecar.names() {
            let id = LinearId::from_checkpoint_name(&name, architecture).ok_or_else(|| {
                Error::format(
                    file,
                    format!("`{name}` is not a block Linear of a {architecture:?} model"),
                )
            })?;
            let scores = sidecar.f32(&name)?;
            if scores.data.iter().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite(format!("{file}: `{name}`")));
            }
            linears.insert(id, scores);
        }
        Ok(Self { info, linears })
    }
}
