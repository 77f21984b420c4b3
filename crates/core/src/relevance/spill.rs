//! Running sums kept in a scratch file instead of memory (native only): per-weight relevance
//! sums of a 7B model take 26 GB, more than a 24 GB machine has beside the model, but fit on
//! its disk. Each sample adds its relevance to a Linear's region with one read and one write
//! of that region, so memory holds one Linear's sums at a time; the page cache keeps what it can.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where per-weight sums may spill when they do not fit in memory, and how much room the disk
/// there has (`None`: unknown, not checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scratch {
    pub dir: PathBuf,
    pub free_bytes: Option<u64>,
}

/// Float32 sums, one region per key, in a file that is gone once this is dropped (on Unix
/// it is unlinked as soon as it is open, so not even a killed process leaves it behind).
pub struct SumsFile<K> {
    file: File,
    path: PathBuf,
    /// Byte offset and length in floats of each key's region.
    regions: BTreeMap<K, (u64, usize)>,
    end: u64,
}

impl<K: Ord> SumsFile<K> {
    /// Creates an empty scratch file in `dir`.
    pub fn create(dir: &Path) -> Result<Self> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = dir.join(format!(
            "scalpel-sums-{}-{stamp}.scratch",
            std::process::id()
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| scratch_error(&path, "creating it", e))?;
        #[cfg(unix)]
        let _ = std::fs::remove_file(&path);
        Ok(Self {
            file,
            path,
            regions: BTreeMap::new(),
            end: 0,
        })
    }

    /// Adds `values` to the sums of `key` (element by element, in float32), or starts them.
    pub fn add(&mut self, key: K, values: &[f32]) -> Result<()> {
        match self.regions.get(&key) {
            Some(&(offset, len)) => {
                if len != values.len() {
                    return Err(Error::InvalidInput(format!(
                        "scratch sums of {len} values cannot take {} more",
                        values.len()
                    )));
                }
                let mut sums = self.read_at(offset, len)?;
                for (s, v) in sums.iter_mut().zip(values) {
                    *s += v;
                }
                self.write_at(offset, &sums)
            }
            // The first sample's values are the sums: written as they are, without a copy.
            None => {
                let offset = self.end;
                self.end += 4 * values.len() as u64;
                self.regions.insert(key, (offset, values.len()));
                self.write_at(offset, values)
            }
        }
    }

    /// The sums of `key`, if any were added.
    pub fn read(&self, key: &K) -> Result<Option<Vec<f32>>> {
        match self.regions.get(key) {
            Some(&(offset, len)) => self.read_at(offset, len).map(Some),
            None => Ok(None),
        }
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<f32>> {
        let mut bytes = vec![0u8; 4 * len];
        let mut file = &self.file;
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| scratch_error(&self.path, "reading it back", e))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn write_at(&self, offset: u64, values: &[f32]) -> Result<()> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut file = &self.file;
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.write_all(&bytes))
            .map_err(|e| scratch_error(&self.path, "writing to it (is the disk full?)", e))
    }
}

impl<K> Drop for SumsFile<K> {
    fn drop(&mut self) {
        #[cfg(not(unix))]
        let _ = std::fs::remove_file(&self.path);
    }
}

fn scratch_error(path: &Path, doing: &str, e: std::io::Error) -> Error {
    Error::Scratch {
        path: path.display().to_string(),
        reason: format!("{doing}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::SumsFile;

    #[test]
    fn sums_add_up_per_key_and_the_file_leaves_nothing_behind() {
        let dir = std::env::temp_dir().join(format!("scalpel-spill-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut file = SumsFile::<(u64, u8)>::create(&dir).unwrap();
        file.add((1, 0), &[1.0, 2.0, 3.0]).unwrap();
        file.add((2, 1), &[10.0, 20.0]).unwrap();
        file.add((1, 0), &[0.5, 0.25, -3.0]).unwrap();
        assert_eq!(file.read(&(1, 0)).unwrap(), Some(vec![1.5, 2.25, 0.0]));
        assert_eq!(file.read(&(2, 1)).unwrap(), Some(vec![10.0, 20.0]));
        assert_eq!(file.read(&(3, 0)).unwrap(), None);
        assert_eq!(file.end, 20);
        assert!(
            file.add((2, 1), &[1.0]).is_err(),
            "a region keeps its length"
        );
        drop(file);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }
}
