use tract_onnx::prelude::*;
#[test]
fn probe() {
    for f in ["vision_fp32.onnx", "vision_int8.onnx"] {
        let path = format!("{}/models/random-base/{f}", env!("CARGO_MANIFEST_DIR"));
        let t = std::time::Instant::now();
        let m = tract_onnx::onnx().model_for_path(&path).unwrap().with_input_fact(0, f32::fact([1, 3, 224, 224]).into()).unwrap();
        let t1 = t.elapsed();
        let typed = m.into_typed().unwrap().into_decluttered().unwrap();
        let t2 = t.elapsed();
        let opt = typed.clone().into_optimized().unwrap();
        let t3 = t.elapsed();
        let mut counts = std::collections::BTreeMap::new();
        for n in opt.nodes() { *counts.entry(n.op.name().to_string()).or_insert(0) += 1; }
        println!("{f}: load {t1:?} decluttered {t2:?} optimized {t3:?}\n{counts:?}");
        let mut dq = std::collections::BTreeMap::new();
        for n in typed.nodes() { *dq.entry(n.op.name().to_string()).or_insert(0) += 1; }
        println!("decluttered: {dq:?}");
        let plan = opt.into_runnable().unwrap();
        let mut st = plan.spawn().unwrap();
        let input = Tensor::zero::<f32>(&[1, 3, 224, 224]).unwrap();
        st.run(tvec!(input.clone().into())).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..3 { st.run(tvec!(input.clone().into())).unwrap(); }
        println!("{f}: {:?}/run", t.elapsed() / 3);
    }
}
