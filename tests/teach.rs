//! Teaching a label by example with real (random-weight) embeddings from the tiny model: a
//! label defined by examples alone recognises its own image, also slightly changed, above
//! others; without enough examples it has no model.
use std::path::{Path, PathBuf};

use image::RgbImage;
use siglipd::engine::Engine;
use siglipd::examples::ExampleStore;
use siglipd::model::{Bundle, Precision, PrecisionChoice};
use siglipd::state::StateDir;
use siglipd::teach::{fit_label, LabelText};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn open(name: &str) -> RgbImage {
    image::open(fixtures().join("images").join(name)).unwrap().to_rgb8()
}

/// `img` a little brighter and cropped by `pct` percent on each side: "slightly perturbed".
fn perturbed(img: &RgbImage, lift: u8, pct: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (dx, dy) = (w * pct / 100, h * pct / 100);
    let mut out = image::imageops::crop_imm(img, dx, dy, w - 2 * dx, h - 2 * dy).to_image();
    out.pixels_mut().for_each(|p| p.0.iter_mut().for_each(|v| *v = v.saturating_add(lift)));
    out
}

#[test]
fn a_label_from_examples_alone_ranks_its_image_first_and_needs_enough_examples() {
    let bundle = Bundle::open(&fixtures().join("tiny")).unwrap();
    let mut engine = Engine::load(bundle, PrecisionChoice::Fixed(Precision::Fp32), false).unwrap();
    let mut embed = |img: &RgbImage| engine.embed_rgb(img).unwrap();
    let a = open("chelsea.png");
    let positives = [a.clone(), perturbed(&a, 0, 5), image::imageops::flip_horizontal(&a)];
    // not coffee.png: for the tiny random model it embeds like the cat (cosine 0.986, colours)
    let negatives = [open("rocket.jpg"), open("astronaut.png"), open("la.png")];

    let dir = tempfile::tempdir().unwrap();
    let mut store = ExampleStore::load(Some(StateDir::open(dir.path()).unwrap()), "tiny");
    let mut ids = Vec::new();
    for (img, positive) in positives.iter().map(|i| (i, true)).chain(negatives.iter().map(|i| (i, false))) {
        ids.push(store.add("drive", "our_cat", positive, embed(img), 0.0, None).unwrap());
    }
    let cal = siglipd::classify::Calibration::from_log_scale(0.0, 0.0);
    let label = LabelText { text: None, cal };
    let fit = fit_label(&store.list("drive", "our_cat").unwrap(), label).unwrap().expect("3 yes and 3 no: fitted");

    // A itself, and A changed in a way no example shows, against images no example shows
    let p = |img: &RgbImage, embed: &mut dyn FnMut(&RgbImage) -> Vec<f32>| fit.probability(&embed(img));
    let pa = p(&a, &mut embed);
    let pa2 = p(&perturbed(&a, 8, 3), &mut embed);
    let pb = p(&open("coins.jpg"), &mut embed);
    let pc = p(&open("camera_gray.png"), &mut embed);
    eprintln!("A {pa:.4}  A' {pa2:.4}  B {pb:.4}  C {pc:.4}");
    assert!(pa > pb && pa > pc && pa2 > pb && pa2 > pc, "A {pa}, A' {pa2} must score above B {pb} and C {pc}");
    assert!(pa > 0.5 && pa2 > 0.5, "A {pa} and A' {pa2} are the label");

    // deleting examples: back to "not enough examples"
    assert!(store.remove("drive", ids[0]).unwrap());
    assert!(fit_label(&store.list("drive", "our_cat").unwrap(), label).unwrap().is_none());
}
