use super::*;

#[test]
fn default_is_valid_and_round_trips_through_toml() {
    let c = Config::default();
    c.validate().unwrap();
    let back: Config = toml::from_str(&c.to_toml()).unwrap();
    assert_eq!(back, c);
}

/// Names are typed: an unknown one is refused when the file (or flag) is read, showing
/// its key, and `FromStr` names the key.
#[test]
fn unknown_names_name_their_key() {
    for (line, key) in [
        ("model = \"lstm9\"", "model"),
        ("task = \"sort\"", "task"),
        ("schedule = \"cosine\"", "schedule"),
    ] {
        // The error shows the file's line: key and value.
        let err = Config::parse(line, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.toml") && err.contains(line), "{key}: {err}");
    }
    let err = "lstm9".parse::<ModelName>().unwrap_err().to_string();
    assert!(err.contains("`model`") && err.contains("fastgrnn"), "{err}");
    for m in ModelName::all() {
        assert_eq!(m.as_str().parse::<ModelName>().unwrap(), m);
        let text = toml::to_string(&Config {
            model: m,
            ..Config::default()
        })
        .unwrap();
        assert!(text.contains(&format!("model = \"{m}\"")), "{text}");
    }
}

#[test]
fn bad_values_name_their_field() {
    type Mutation = fn(&mut Config);
    let cases: [(Mutation, &str); 11] = [
        (|c| c.bits = Some(9), "bits"),
        (|c| c.lr = f64::NAN, "lr"),
        (|c| c.lr = f64::INFINITY, "lr"),
        (|c| c.orthogonal_lr = Some(f64::INFINITY), "orthogonal_lr"),
        (|c| c.step_lr = Some(-1.0), "step_lr"),
        (|c| c.bjorck_iterations = 0, "bjorck_iterations"),
        (|c| c.lr_gamma = 0.0, "lr_gamma"),
        (|c| c.lr_gamma = f64::NAN, "lr_gamma"),
        (|c| c.clip = f64::INFINITY, "clip"),
        (|c| c.range = RangeRule::Lsq, "range"),
        (
            |c| {
                c.model = "block-hadamrnn".parse().unwrap();
                c.block = 3;
            },
            "block",
        ),
    ];
    for (mutate, field) in cases {
        let mut c = Config::default();
        mutate(&mut c);
        if field == "range" {
            c.model = "lstm".parse().unwrap();
        }
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains(&format!("`{field}`")), "{err}");
    }
    let c = Config {
        model: "ornn-bjorck".parse().unwrap(),
        bits: Some(4),
        ..Config::default()
    };
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("qornn-bjorck"));
}

/// Orthogonal rounding is refused for any exactly orthogonal W (asked of the built
/// parametrisation), and kept for an approximately orthogonal one.
#[test]
fn orthogonal_rounding_of_an_exact_w_is_refused() {
    for model in ["hadamrnn", "block-hadamrnn", "qornn-rotations"] {
        let c = Config {
            model: model.parse().unwrap(),
            rounding: Rounding::Orthogonal,
            ..Config::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("`rounding`") && err.contains("exactly"),
            "{model}: {err}"
        );
    }
    let c = Config {
        bits: Some(4),
        rounding: Rounding::Orthogonal,
        ..Config::default()
    };
    c.validate().unwrap();
}

#[test]
fn bit_width_schedule_and_warm_up() {
    let c = Config {
        bits: Some(4),
        bits_schedule: vec![(0, 8), (100, 6), (200, 4)].into(),
        warmup_steps: 10,
        ..Config::default()
    };
    c.validate().unwrap();
    let widths: Vec<u32> = [0, 99, 100, 199, 200, 5000].map(|s| c.bits_at(s)).to_vec();
    assert_eq!(widths, [8, 8, 6, 6, 4, 4]);
    assert_eq!(c.warmup_factor(0), 0.1);
    assert_eq!(c.warmup_factor(9), 1.0);
    assert_eq!(c.warmup_factor(500), 1.0);
    for bad in [
        vec![(0, 8), (100, 6)],           // ends at 6, not --bits 4
        vec![(10, 8), (100, 4)],          // does not start at 0
        vec![(0, 8), (200, 6), (100, 4)], // steps not rising
        vec![(0, 9), (100, 4)],           // 9 bits
    ] {
        let c = Config {
            bits_schedule: bad.into(),
            ..c.clone()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("`bits_schedule`"), "{err}");
    }
}

/// The flags' values, parsed as the CLI parses them.
fn flags(pairs: &[(&str, &str)]) -> toml::Table {
    pairs
        .iter()
        .map(|(key, text)| {
            let setting = SETTINGS.iter().find(|s| s.key == *key).unwrap();
            (key.to_string(), (setting.parse)(text).unwrap())
        })
        .collect()
}

#[test]
fn settings_list_every_field_once() {
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    let keys: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
    for key in defaults.keys() {
        assert_eq!(keys.iter().filter(|k| *k == key).count(), 1, "{key}");
    }
    assert!(SETTINGS.iter().all(|s| !s.help.trim().is_empty()));
}

/// Defaults, then the file, then the flags; an alias in the file gives way to the flag.
#[test]
fn flags_override_the_file_which_overrides_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.toml");
    std::fs::write(
        &file,
        "hidden = 64\nlr = 0.01\nquantizer = \"mse\"\nbits = 4\nbits_schedule = \"0:8, 50:4\"\n",
    )
    .unwrap();
    let c = Config::layered(Some(&file), &flags(&[("lr", "0.002"), ("range", "lsq")]));
    let err = c.unwrap_err().to_string();
    assert!(err.contains("bits_schedule"), "{err}");
    let c = Config::layered(Some(&file), &flags(&[("lr", "0.002"), ("seed", "7")])).unwrap();
    assert_eq!((c.hidden, c.lr, c.seed), (64, 0.002, 7));
    assert_eq!((c.range, c.delay), (RangeRule::Mse, 100));
    assert_eq!(c.bits_schedule.0, vec![(0, 8), (50, 4)]);
    let c = Config::layered(Some(&file), &flags(&[("range", "max")])).unwrap();
    assert_eq!(c.range, RangeRule::Max);
    assert_eq!(
        Config::layered(None, &toml::Table::new()).unwrap(),
        Config::default()
    );
}

#[test]
fn flag_text_is_read_by_the_setting_type() {
    let parse =
        |key: &str, text: &str| (SETTINGS.iter().find(|s| s.key == key).unwrap().parse)(text);
    assert_eq!(parse("lr", "1e-3"), Ok(toml::Value::Float(1e-3)));
    assert_eq!(parse("steps", "12"), Ok(toml::Value::Integer(12)));
    assert_eq!(
        parse("data_dir", "123"),
        Ok(toml::Value::String("123".into()))
    );
    assert!(parse("steps", "-1").is_err());
    assert!(parse("model", "qornn-magic")
        .unwrap_err()
        .contains("qornn-bjorck"));
    assert!(parse("bits_schedule", "0:8,x").unwrap_err().contains("`x`"));
}

#[test]
fn unknown_keys_are_refused() {
    assert!(toml::from_str::<Config>("hiden = 3").is_err());
}

/// `--model` and `--bits` help come from the registry: every model is listed, with the
/// width it defaults to (a hand-written list said 8 for qornn-rotations, whose default is 4).
#[test]
fn model_and_bits_help_list_every_registered_model() {
    let help = |key: &str| SETTINGS.iter().find(|s| s.key == key).unwrap().help_text();
    let (models, bits) = (help("model"), help("bits"));
    for model in crate::registry::ModelName::all() {
        assert!(models.contains(model.as_str()), "{model} missing: {models}");
        let entry = format!("{} {}", model.as_str(), model.entry().default_bits);
        assert!(bits.contains(&entry), "{entry} missing: {bits}");
    }
    assert!(bits.contains("qornn-rotations 4"), "{bits}");
}
