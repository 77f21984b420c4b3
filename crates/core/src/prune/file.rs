//! Mask files: one `U8` tensor per block Linear (1 = kept) and the [`MaskInfo`], in the same
//! per-Linear safetensors layout as score files.

use super::{KeepBits, LinearMask, MaskInfo, Masks};
use crate::error::{Error, Result};
use crate::io::safetensors::OutData;
use crate::model::Architecture;
use crate::score::{read_per_linear, write_per_linear};

const FORMAT: &str = "scalpel-mask/1";

impl Masks {
    pub fn to_safetensors(&self, architecture: Architecture) -> Result<Vec<u8>> {
        let bytes: Vec<Vec<u8>> = self.linears.values().map(|m| m.keep.to_bytes()).collect();
        let tensors = self
            .linears
            .iter()
            .zip(&bytes)
            .map(|((&id, m), keep)| (id, m.shape.to_vec(), OutData::U8(keep)))
            .collect();
        write_per_linear(FORMAT, &self.info, architecture, tensors)
    }

    /// Reads a mask file; `file` names it in errors. Check it with [`Masks::check_for`].
    pub fn from_safetensors(file: &str, bytes: &[u8], architecture: Architecture) -> Result<Self> {
        let (info, linears) = read_per_linear::<MaskInfo, _>(
            file,
            bytes,
            FORMAT,
            "mask",
            architecture,
            |s, name| {
                let (shape, keep) = s.u8(name)?;
                let shape: [usize; 2] = shape.try_into().map_err(|s| {
                    Error::format(file, format!("`{name}` has shape {s:?}, not a matrix"))
                })?;
                if keep.iter().any(|&k| k > 1) {
                    return Err(Error::format(
                        file,
                        format!("`{name}` holds values other than 0 and 1"),
                    ));
                }
                Ok(LinearMask {
                    shape,
                    keep: KeepBits::from_flags(keep.iter().map(|&k| k == 1)),
                })
            },
        )?;
        Ok(Self { info, linears })
    }
}
