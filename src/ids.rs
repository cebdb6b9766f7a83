//! Stable, readable ids for MQTT topics and Home Assistant: one function for names, one
//! scheme for joining them.
//!
//! * [`slug`]: a name as the user wrote it (`Küche`, `собака`, `猫`, `Front door!`) → a topic
//!   level in `[a-z0-9_]`, never empty. ASCII names keep their letters; a name that needed
//!   transliteration (`deunicode`) gets a short stable hash of the original appended, so two
//!   names that transliterate alike (`猫` and `毛`) stay apart.
//! * [`EntityIds`]: discovery topics, component keys and `unique_id`s are slugs joined with
//!   `-`, which no slug contains, so the join is injective over (node, camera, entity kind,
//!   label): `siglipd-pi-garage_door` and `siglipd-pi_garage-door` can no longer meet.
//!   Home Assistant's discovery id alphabet is `[a-zA-Z0-9_-]`
//!   (<https://www.home-assistant.io/integrations/mqtt/#discovery-topic>).
use sha2::{Digest, Sha256};

/// `name` → `[a-z0-9_]+`: lowercase, runs of anything else → one `_`, trimmed. Names with
/// characters outside ASCII are transliterated and get `_` + 4 hex digits of the sha256 of the
/// trimmed name (stable across runs and machines). Returns `None` for a blank name.
pub fn slug(name: &str) -> Option<String> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let ascii = name.is_ascii();
    let text = if ascii { name.to_string() } else { deunicode::deunicode(name) };
    let mut out = ascii_slug(&text);
    if !ascii {
        let hash = hex::encode(&Sha256::digest(name.as_bytes())[..2]);
        out = if out.is_empty() { format!("x_{hash}") } else { format!("{out}_{hash}") };
    }
    (!out.is_empty()).then_some(out)
}

/// ASCII letters and digits lowercased, every other run → `_`, no leading/trailing `_`.
fn ascii_slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// The entity kinds a camera publishes to Home Assistant. Their names are part of component
/// keys and `unique_id`s: renaming one orphans users' entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    /// binary_sensor per label
    Label,
    /// number per label: its on-threshold
    Threshold,
    /// sensor: the best label of the last frame
    TopLabel,
    /// sensor: inference time of the last frame
    InferMs,
    /// switch: pause/resume the camera
    Enabled,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Label => "label",
            EntityKind::Threshold => "threshold",
            EntityKind::TopLabel => "top_label",
            EntityKind::InferMs => "infer_ms",
            EntityKind::Enabled => "enabled",
        }
    }

    pub fn per_label(self) -> bool {
        matches!(self, EntityKind::Label | EntityKind::Threshold)
    }
}

/// Ids of one camera's Home Assistant device on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityIds {
    /// `siglipd-<node>-<camera>`
    pub device: String,
}

impl EntityIds {
    /// `node` and `camera` must be slugs (no `-`).
    pub fn new(node: &str, camera: &str) -> Self {
        debug_assert!(!node.contains('-') && !camera.contains('-'));
        Self { device: format!("siglipd-{node}-{camera}") }
    }

    /// The component key inside the device payload: `label-cat`, `threshold-cat`, `enabled`.
    pub fn component(&self, kind: EntityKind, label: Option<&str>) -> String {
        match (kind.per_label(), label) {
            (true, Some(l)) => format!("{}-{l}", kind.as_str()),
            _ => kind.as_str().to_string(),
        }
    }

    /// Globally unique: `<device>-<component>`.
    pub fn unique_id(&self, kind: EntityKind, label: Option<&str>) -> String {
        format!("{}-{}", self.device, self.component(kind, label))
    }

    /// `<discovery prefix>/device/<device>/config`.
    pub fn discovery_topic(&self, prefix: &str) -> String {
        format!("{prefix}/device/{}/config", self.device)
    }

    /// The device id siglipd used before this scheme (`siglipd_<node>_<camera>`): its retained
    /// discovery is cleared once so that upgraded installations keep no duplicate device.
    pub fn legacy_device(node: &str, camera: &str) -> String {
        format!("siglipd_{node}_{camera}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ascii_names_stay_readable() {
        assert_eq!(slug("A Cat!").as_deref(), Some("a_cat"));
        assert_eq!(slug("  front   door ").as_deref(), Some("front_door"));
        assert_eq!(slug("cat threshold").as_deref(), Some("cat_threshold"));
        assert_eq!(slug("!!!"), None);
        assert_eq!(slug("   "), None);
    }

    #[test]
    fn names_in_any_script_get_readable_stable_unique_slugs() {
        let cafe = slug("café").unwrap();
        assert!(cafe.starts_with("cafe_") && cafe.len() == "cafe_".len() + 4, "{cafe}");
        assert_eq!(slug("café"), slug(" café "), "stable, trimmed");
        assert!(slug("Küche").unwrap().starts_with("kuche_"));
        assert!(slug("собака").unwrap().starts_with("sobaka_"));
        let (a, b) = (slug("猫").unwrap(), slug("毛").unwrap());
        assert_ne!(a, b, "same transliteration, different names");
        assert_ne!(slug("café"), slug("cafe"));
        // an emoji-only name still gets an id
        assert!(slug("🐈").unwrap().chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }

    #[test]
    fn ids_cannot_collide_across_nodes_and_cameras() {
        // the reported collision: node pi + camera garage_door vs node pi_garage + camera door
        let a = EntityIds::new("pi", "garage_door");
        let b = EntityIds::new("pi_garage", "door");
        assert_ne!(a.device, b.device);
        assert_ne!(a.discovery_topic("homeassistant"), b.discovery_topic("homeassistant"));
        // labels that look like other entities' names
        let t = a.unique_id(EntityKind::Threshold, Some("cat"));
        let l = a.unique_id(EntityKind::Label, Some("cat_threshold"));
        assert_ne!(t, l);
        assert_ne!(a.component(EntityKind::TopLabel, None), a.component(EntityKind::Label, Some("top_label")));
        assert_ne!(a.component(EntityKind::InferMs, None), a.component(EntityKind::Label, Some("infer_ms")));
    }

    fn any_slug() -> impl Strategy<Value = String> {
        "[a-z0-9_]{1,8}".prop_filter_map("slug", |s| slug(&s))
    }

    proptest! {
        #[test]
        fn slugs_use_the_topic_alphabet(name in "\\PC{0,20}") {
            if let Some(s) = slug(&name) {
                prop_assert!(!s.is_empty());
                prop_assert!(s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
                prop_assert!(!s.starts_with('_') || s.len() > 1);
            }
        }

        #[test]
        fn unique_ids_are_injective(
            a in (any_slug(), any_slug(), 0..5usize, any_slug()),
            b in (any_slug(), any_slug(), 0..5usize, any_slug()),
        ) {
            let kinds = [EntityKind::Label, EntityKind::Threshold, EntityKind::TopLabel, EntityKind::InferMs, EntityKind::Enabled];
            let key = |(n, c, k, l): &(String, String, usize, String)| {
                let kind = kinds[*k];
                let label = kind.per_label().then_some(l.clone());
                (n.clone(), c.clone(), kind, label)
            };
            let (ka, kb) = (key(&a), key(&b));
            let id = |k: &(String, String, EntityKind, Option<String>)| EntityIds::new(&k.0, &k.1).unique_id(k.2, k.3.as_deref());
            prop_assert_eq!(ka == kb, id(&ka) == id(&kb));
        }
    }
}
