//! Home Assistant device discovery payloads, and what this node published before, so that
//! cameras, labels and entities removed from the config are removed from Home Assistant and
//! their retained topics cleared.
//!
//! Rules followed (<https://www.home-assistant.io/integrations/mqtt/#device-discovery-payload>):
//! one retained payload per device on `<prefix>/device/<id>/config`, `<id>` and component
//! keys in `[a-zA-Z0-9_-]`, `origin` required; a component disappears only when a payload
//! names its key with just its `platform`; a device disappears on an empty retained payload.
//! Ids come from [`crate::ids`], which cannot collide across nodes, cameras, labels or kinds.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{CameraConfig, MqttConfig};
use crate::ids::{EntityIds, EntityKind};

/// State file of what was published (see [`Published`]).
pub const RECORD_FILE: &str = "mqtt-published.json";
pub const RECORD_FORMAT: &str = "siglipd-mqtt-published";
pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct DevicePayload {
    pub device: Device,
    pub origin: Origin,
    pub components: BTreeMap<String, Component>,
    pub qos: u8,
}

#[derive(Debug, Serialize)]
pub struct Device {
    pub identifiers: Vec<String>,
    pub name: String,
    pub manufacturer: &'static str,
    pub model: &'static str,
    pub sw_version: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Origin {
    pub name: &'static str,
    pub sw_version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Availability {
    pub topic: String,
}

/// One entity. Optional fields are left out when unset; a removal is `platform` alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Component {
    pub platform: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_on: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_off: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_template: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_of_measurement: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_category: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub availability: Vec<Availability>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_mode: Option<&'static str>,
}

/// The retained topics one camera publishes (state, status, controls, per label).
pub fn camera_topics(base: &str, cam: &CameraConfig, snapshots: bool) -> Vec<String> {
    let c = format!("{base}/{}", cam.id);
    let mut t = vec![format!("{c}/state"), format!("{c}/status"), format!("{c}/enabled")];
    for l in &cam.labels {
        t.push(format!("{c}/{}", l.slug));
        t.push(format!("{c}/{}/threshold", l.slug));
        if snapshots {
            t.push(format!("{c}/{}/snapshot", l.slug));
        }
    }
    t
}

/// One camera's device: a binary_sensor per label, a number per label for its threshold, a
/// sensor for the top label and one for inference time, a switch to pause the camera.
///
/// Availability: sensors follow the node and the camera's status (a camera whose source is
/// down or whose frames fail is unavailable); the controls (switch, numbers) follow the node
/// only — the daemon accepts them while the camera is offline.
pub fn device(cfg: &MqttConfig, cam: &CameraConfig) -> (String, DevicePayload) {
    let prefix = cfg.discovery.as_deref().unwrap_or("homeassistant");
    let ids = EntityIds::new(&cfg.node_id, &cam.id);
    let base = format!("{}/{}", cfg.base, cam.id);
    let node_only = vec![Availability { topic: format!("{}/availability", cfg.base) }];
    let mut with_camera = node_only.clone();
    with_camera.push(Availability { topic: format!("{base}/status") });
    let sensor = |kind: EntityKind, label: Option<&str>| Component {
        unique_id: Some(ids.unique_id(kind, label)),
        availability: with_camera.clone(),
        availability_mode: Some("all"),
        ..Default::default()
    };
    let control = |kind: EntityKind, label: Option<&str>| Component {
        unique_id: Some(ids.unique_id(kind, label)),
        availability: node_only.clone(),
        entity_category: Some("config"),
        ..Default::default()
    };
    let mut cmps = BTreeMap::new();
    for l in &cam.labels {
        let slug = Some(l.slug.as_str());
        cmps.insert(
            ids.component(EntityKind::Label, slug),
            Component {
                platform: "binary_sensor",
                name: Some(l.name.clone()),
                state_topic: Some(format!("{base}/{}", l.slug)),
                payload_on: Some("ON"),
                payload_off: Some("OFF"),
                ..sensor(EntityKind::Label, slug)
            },
        );
        cmps.insert(
            ids.component(EntityKind::Threshold, slug),
            Component {
                platform: "number",
                name: Some(format!("{} threshold", l.name)),
                command_topic: Some(format!("{base}/{}/threshold/set", l.slug)),
                state_topic: Some(format!("{base}/{}/threshold", l.slug)),
                min: Some(0.0),
                max: Some(1.0),
                step: Some(0.01),
                mode: Some("box"),
                ..control(EntityKind::Threshold, slug)
            },
        );
    }
    cmps.insert(
        ids.component(EntityKind::TopLabel, None),
        Component {
            platform: "sensor",
            name: Some("Top label".into()),
            state_topic: Some(format!("{base}/state")),
            value_template: Some("{{ value_json.top[0].label if value_json.top else '' }}"),
            ..sensor(EntityKind::TopLabel, None)
        },
    );
    cmps.insert(
        ids.component(EntityKind::InferMs, None),
        Component {
            platform: "sensor",
            name: Some("Inference time".into()),
            state_topic: Some(format!("{base}/state")),
            value_template: Some("{{ value_json.infer_ms }}"),
            unit_of_measurement: Some("ms"),
            state_class: Some("measurement"),
            entity_category: Some("diagnostic"),
            ..sensor(EntityKind::InferMs, None)
        },
    );
    cmps.insert(
        ids.component(EntityKind::Enabled, None),
        Component {
            platform: "switch",
            name: Some("Enabled".into()),
            command_topic: Some(format!("{base}/enabled/set")),
            state_topic: Some(format!("{base}/enabled")),
            payload_on: Some("ON"),
            payload_off: Some("OFF"),
            ..control(EntityKind::Enabled, None)
        },
    );
    let version = env!("CARGO_PKG_VERSION");
    let payload = DevicePayload {
        device: Device {
            identifiers: vec![ids.device.clone()],
            name: cam.name.clone(),
            manufacturer: "siglipd",
            model: "SigLIP zero-shot camera",
            sw_version: version,
        },
        origin: Origin { name: "siglipd", sw_version: version },
        components: cmps,
        qos: cfg.qos,
    };
    (ids.discovery_topic(prefix), payload)
}

/// What this node has published and must clean up if it stops publishing it: every retained
/// discovery topic with its component keys and platforms, and every retained state topic.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// discovery topic → component key → platform
    pub devices: BTreeMap<String, BTreeMap<String, String>>,
    pub topics: Vec<String>,
}

/// What to send on every (re)connect: discovery payloads (with removals of components that
/// were published before and are gone) and the retained topics to clear (empty payload).
#[derive(Debug, Default)]
pub struct Plan {
    pub discovery: Vec<(String, Vec<u8>)>,
    pub clear: Vec<String>,
    /// What will have been published once the plan is sent.
    pub record: Published,
}

/// Builds the plan from the config and the previous record (None: first run under this id
/// scheme, so the previous scheme's device topics of these cameras are cleared).
pub fn plan(cfg: &MqttConfig, cams: &[CameraConfig], previous: Option<&Published>) -> Plan {
    let mut record = Published::default();
    let mut devices = Vec::new();
    for cam in cams {
        record.topics.extend(camera_topics(&cfg.base, cam, cfg.snapshots));
        if cfg.discovery.is_some() {
            let (topic, payload) = device(cfg, cam);
            let keys = payload.components.iter().map(|(k, c)| (k.clone(), c.platform.to_string())).collect();
            record.devices.insert(topic.clone(), keys);
            devices.push((topic, payload));
        }
    }
    let mut clear = Vec::new();
    match previous {
        Some(prev) => {
            for (topic, keys) in &prev.devices {
                let Some((_, payload)) = devices.iter_mut().find(|(t, _)| t == topic) else {
                    clear.push(topic.clone());
                    continue;
                };
                for (key, platform) in keys {
                    if !payload.components.contains_key(key) {
                        let platform = platform_name(platform);
                        payload.components.insert(key.clone(), Component { platform, ..Default::default() });
                    }
                }
            }
            clear.extend(prev.topics.iter().filter(|t| !record.topics.contains(t)).cloned());
        }
        None => {
            let prefix = cfg.discovery.as_deref().unwrap_or("homeassistant");
            for cam in cams {
                clear.push(format!("{prefix}/device/{}/config", EntityIds::legacy_device(&cfg.node_id, &cam.id)));
            }
        }
    }
    let discovery = devices.into_iter().map(|(t, p)| (t, serde_json::to_vec(&p).expect("discovery payloads serialize"))).collect();
    Plan { discovery, clear, record }
}

/// The platform names siglipd publishes, as `'static` strings (records store them as text).
fn platform_name(p: &str) -> &'static str {
    match p {
        "binary_sensor" => "binary_sensor",
        "number" => "number",
        "switch" => "switch",
        "image" => "image",
        _ => "sensor",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::collections::HashSet;

    fn config(node: &str, cams: &[(&str, &[&str])]) -> Config {
        let mut t = format!("[model]\nbundle = \"m\"\n[mqtt]\nnode_id = \"{node}\"\n");
        for (id, labels) in cams {
            t += &format!("[[camera]]\nid = \"{id}\"\nsource = {{ kind = \"files\", path = \"x\" }}\n");
            for l in *labels {
                t += &format!("[[camera.label]]\nname = \"{l}\"\n");
            }
        }
        Config::parse(&t, "t", std::path::Path::new("/")).unwrap()
    }

    fn value(p: &[u8]) -> serde_json::Value {
        serde_json::from_slice(p).unwrap()
    }

    /// Home Assistant's rules over every payload of every node on one broker: discovery ids
    /// in its alphabet, component keys unique per device, unique_ids unique across devices.
    fn check_rules(plans: &[Plan]) {
        let mut uids = HashSet::new();
        let mut topics = HashSet::new();
        for p in plans {
            for (topic, payload) in &p.discovery {
                assert!(topics.insert(topic.clone()), "two devices on {topic}");
                let id = topic.split('/').nth(2).unwrap();
                assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{id}");
                let v = value(payload);
                let cmps = v["components"].as_object().unwrap();
                for (key, c) in cmps {
                    assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{key}");
                    if let Some(u) = c["unique_id"].as_str() {
                        assert!(uids.insert(u.to_string()), "unique_id {u} twice");
                    }
                }
            }
        }
    }

    #[test]
    fn labels_named_like_other_entities_are_all_discovered() {
        let c = config("pi", &[("door", &["cat", "cat threshold", "Top label", "infer ms", "enabled switch"])]);
        let p = plan(c.mqtt.as_ref().unwrap(), &c.cameras, None);
        check_rules(std::slice::from_ref(&p));
        let v = value(&p.discovery[0].1);
        // 5 labels × (binary_sensor + number) + top label + inference time + switch
        assert_eq!(v["components"].as_object().unwrap().len(), 13);
    }

    #[test]
    fn two_nodes_cannot_collide() {
        let a = config("pi", &[("garage_door", &["cat"])]);
        let b = config("pi_garage", &[("door", &["cat"])]);
        let pa = plan(a.mqtt.as_ref().unwrap(), &a.cameras, None);
        let pb = plan(b.mqtt.as_ref().unwrap(), &b.cameras, None);
        check_rules(&[pa, pb]);
    }

    #[test]
    fn controls_stay_available_when_the_camera_is_offline() {
        let c = config("pi", &[("door", &["cat"])]);
        let (_, d) = device(c.mqtt.as_ref().unwrap(), &c.cameras[0]);
        let avail = |k: &str| d.components[k].availability.iter().map(|a| a.topic.clone()).collect::<Vec<_>>();
        assert_eq!(avail("enabled"), vec!["siglipd/pi/availability"]);
        assert_eq!(avail("threshold-cat"), vec!["siglipd/pi/availability"]);
        assert_eq!(avail("label-cat"), vec!["siglipd/pi/availability", "siglipd/pi/door/status"]);
    }

    #[test]
    fn removed_cameras_labels_and_topics_are_cleaned_up() {
        let before = config("pi", &[("door", &["cat", "dog"]), ("garage", &["car"])]);
        let first = plan(before.mqtt.as_ref().unwrap(), &before.cameras, None);
        // first run under this scheme: the old scheme's devices are cleared once
        assert!(first.clear.contains(&"homeassistant/device/siglipd_pi_door/config".to_string()), "{:?}", first.clear);
        let after = config("pi", &[("door", &["cat"])]);
        let second = plan(after.mqtt.as_ref().unwrap(), &after.cameras, Some(&first.record));
        // the garage device: an empty retained payload, and its state topics cleared
        assert!(second.clear.contains(&"homeassistant/device/siglipd-pi-garage/config".to_string()));
        assert!(second.clear.contains(&"siglipd/pi/garage/car".to_string()));
        assert!(second.clear.contains(&"siglipd/pi/garage/status".to_string()));
        // the dog label: named with its platform alone in door's payload, its topics cleared
        let v = value(&second.discovery[0].1);
        assert_eq!(v["components"]["label-dog"], serde_json::json!({"platform": "binary_sensor"}));
        assert_eq!(v["components"]["threshold-dog"], serde_json::json!({"platform": "number"}));
        assert!(second.clear.contains(&"siglipd/pi/door/dog".to_string()));
        assert!(!second.clear.iter().any(|t| t.starts_with("siglipd/pi/door/cat")));
        // and the record forgets them: a third start removes nothing more
        let third = plan(after.mqtt.as_ref().unwrap(), &after.cameras, Some(&second.record));
        assert!(third.clear.is_empty(), "{:?}", third.clear);
    }
}
