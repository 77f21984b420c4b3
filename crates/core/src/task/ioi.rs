//! Indirect object identification prompts (Wang et al. 2022): "When Mary and John went to the
//! store, John gave a drink to" → ` Mary` (the indirect object, IO) rather than ` John` (the
//! subject, S). Templates, names, places and objects are data (`data/tasks/ioi.json`).

use super::{EncodedTask, Split, TaskItem};
use crate::error::{Error, Result};
use crate::io::tokenizer::TextTokenizer;
use crate::rng::SplitMix64;

#[derive(serde::Deserialize)]
struct IoiData {
    /// BABA templates; swapping the first `[B]` and `[A]` gives the ABBA form.
    templates: Vec<String>,
    held_out_templates: Vec<usize>,
    names: Vec<String>,
    places: Vec<String>,
    objects: Vec<String>,
}

const DATA: &str = include_str!("../../data/tasks/ioi.json");

/// What a template becomes once filled in: the prompt and the two names.
struct Filled {
    prompt: String,
    io: String,
    s: String,
}

/// Fills a BABA template (or its ABBA form) and cuts it before the final IO name.
fn fill(template: &str, abba: bool, io: &str, s: &str, place: &str, object: &str) -> Filled {
    let t = if abba {
        // Swap the first occurrences of [B] and [A] (the two names introduced together).
        template
            .replacen("[B]", "\u{1}", 1)
            .replacen("[A]", "[B]", 1)
            .replacen('\u{1}', "[A]", 1)
    } else {
        template.to_string()
    };
    let full = t
        .replace("[A]", io)
        .replace("[B]", s)
        .replace("[PLACE]", place)
        .replace("[OBJECT]", object);
    let cut = full.rfind(&format!(" {io}")).unwrap_or(full.len());
    Filled {
        prompt: full[..cut].to_string(),
        io: io.to_string(),
        s: s.to_string(),
    }
}

/// `n` IOI prompts for `seed`, half ABBA and half BABA in random order. Scoring prompts use
/// the names at even positions and the non-held-out templates; held-out prompts use the rest,
/// so a circuit is tested on names and sentence shapes it was not found with. Names that are
/// not one token (with their leading space) for `tokenizer` are left out, with a note.
pub fn generate(
    tokenizer: &TextTokenizer,
    seed: u64,
    n: usize,
    split: Split,
) -> Result<EncodedTask> {
    let data: IoiData = serde_json::from_str(DATA)
        .map_err(|e| Error::format("data/tasks/ioi.json", e.to_string()))?;
    if n == 0 {
        return Err(Error::InvalidInput("asked for 0 IOI prompts".into()));
    }
    let held_out = |i: usize| data.held_out_templates.contains(&i);
    let templates: Vec<&str> = data
        .templates
        .iter()
        .enumerate()
        .filter(|(i, _)| held_out(*i) == (split == Split::HeldOut))
        .map(|(_, t)| t.as_str())
        .collect();
    let parity = usize::from(split == Split::HeldOut);
    let mut names = Vec::new();
    let mut split_names = Vec::new();
    for (i, name) in data.names.iter().enumerate() {
        if i % 2 != parity {
            continue;
        }
        match tokenizer.encode(&format!(" {name}"))?[..] {
            [id] => names.push((name.as_str(), id)),
            _ => split_names.push(name.as_str()),
        }
    }
    if names.len() < 2 {
        return Err(Error::InvalidInput(format!(
            "this tokenizer keeps fewer than 2 of the IOI names whole ({} split into several tokens)",
            split_names.len()
        )));
    }
    let mut notes = Vec::new();
    if !split_names.is_empty() {
        notes.push(format!(
            "{} of {} names left out: not one token for this tokenizer ({})",
            split_names.len(),
            split_names.len() + names.len(),
            split_names.join(", ")
        ));
    }
    let mut rng = SplitMix64::new(seed ^ ((parity as u64) << 32));
    let mut forms: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
    rng.shuffle(&mut forms);
    let mut items = Vec::with_capacity(n);
    for abba in forms {
        let template = *rng.pick(&templates);
        let (io, io_id) = *rng.pick(&names);
        let (s, s_id) = loop {
            let candidate = *rng.pick(&names);
            if candidate.1 != io_id {
                break candidate;
            }
        };
        let place = rng.pick(&data.places);
        let object = rng.pick(&data.objects);
        let filled = fill(template, abba, io, s, place, object);
        debug_assert!(filled.io == io && filled.s == s);
        items.push(TaskItem {
            ids: tokenizer.encode(&filled.prompt)?,
            answer: io_id,
            distractor: s_id,
        });
    }
    Ok(EncodedTask {
        name: format!("ioi-seed{seed}-{}-{n}", split.name()),
        items,
        notes,
    })
}

/// The prompts of an encoded task as text (decoded), e.g. to save a seed's IOI prompts as a
/// task file or to check them by eye.
pub fn describe(task: &EncodedTask, tokenizer: &TextTokenizer) -> Result<Vec<super::TaskPrompt>> {
    task.items
        .iter()
        .map(|item| {
            Ok(super::TaskPrompt {
                prompt: tokenizer.decode(&item.ids)?,
                answer: tokenizer.decode(&[item.answer])?,
                distractor: tokenizer.decode(&[item.distractor])?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abba_and_baba_forms_put_the_names_where_they_belong() {
        let t = "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]";
        let baba = fill(t, false, "Mary", "John", "store", "drink");
        assert_eq!(
            baba.prompt,
            "Then, John and Mary went to the store. John gave a drink to"
        );
        let abba = fill(t, true, "Mary", "John", "store", "drink");
        assert_eq!(
            abba.prompt,
            "Then, Mary and John went to the store. John gave a drink to"
        );
        assert_eq!((abba.io.as_str(), abba.s.as_str()), ("Mary", "John"));
    }

    #[test]
    fn data_parses_and_held_out_templates_exist() {
        let data: IoiData = serde_json::from_str(DATA).unwrap();
        assert_eq!(data.templates.len(), 15);
        assert!(data.held_out_templates.iter().all(|&i| i < 15));
        assert!(data.templates.iter().all(|t| t.ends_with("[A]")));
    }
}
