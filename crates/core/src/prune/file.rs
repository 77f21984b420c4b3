//! Mask files: safetensors with one `U8` tensor per block Linear (1 = kept) under its checkpoint
//! name, and the [`MaskInfo`] as JSON metadata, so a mask can be checked against a model.

use std::collections::{BTreeMap, HashMap};

use super::{LinearMask, MaskInfo, Masks};
use crate::error::{Error, Result};
use crate::io::safetensors::{OutData, Sidecar, write};
use crate::model::{Architecture, LinearId};

const FORMAT: &str = "scalpel-mask/1";

impl Masks {
    pub fn to_safetensors(&self, architecture: Architecture) -> Result<Vec<u8>> {
        let tensors = self
            .linears
            .iter()
            .map(|(id, m)| {
                (
                    id.checkpoint_name(architecture),
                    m.shape.to_vec(),
                    OutData::U8(&m.keep),
                )
            })
            .collect();
        let info = serde_json::to_string(&self.info)
            .map_err(|e| Error::InvalidInput(format!("encoding the mask info: {e}")))?;
        write(
            tensors,
            HashMap::from([("format".into(), FORMAT.into()), ("info".into(), info)]),
        )
    }

    /// Reads a mask file; `file` names it in errors. Check it with [`Masks::check_for`].
    pub fn from_safetensors(file: &str, bytes: &[u8], architecture: Architecture) -> Result<Self> {
        let sidecar = Sidecar::parse(file, bytes)?;
        let format = sidecar.require("format", "mask")?;
        if format != FORMAT {
            return Err(Error::format(
                file,
                format!("format `{format}` is not a Scalpel mask"),
            ));
        }
        let info: MaskInfo = serde_json::from_str(sidecar.require("info", "mask")?)
            .map_err(|e| Error::format(file, format!("mask info: {e}")))?;
        let mut linears = BTreeMap::new();
        for name in sidecar.names() {
            let id = LinearId::from_checkpoint_name(&name, architecture).ok_or_else(|| {
                Error::format(
                    file,
                    format!("`{name}` is not a block Linear of a {architecture:?} model"),
                )
            })?;
            let (shape, keep) = sidecar.u8(&name)?;
            let shape: [usize; 2] = shape.try_into().map_err(|s| {
                Error::format(file, format!("`{name}` has shape {s:?}, not a matrix"))
            })?;
            if keep.iter().any(|&k| k > 1) {
                return Err(Error::format(
                    file,
                    format!("`{name}` holds values other than 0 and 1"),
                ));
            }
            linears.insert(id, LinearMask { shape, keep });
        }
        Ok(Self { info, linears })
    }
}
