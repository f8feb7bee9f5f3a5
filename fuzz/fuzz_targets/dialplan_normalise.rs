//! `DialPlan::normalise`: arbitrary bytes (as UTF-8, lossily) read as a dialled string by a few
//! plans: NL with defaults, US with outside line 9 and 3- or 4-digit extensions, international
//! only (no country), RU (trunk prefix 8, IDD 810) and DE with outside line 0.
//!
//! Checks: no panic; an `E164` result has 1 to 15 ASCII digits, does not start with 0, and
//! normalising its `+` form again (with the same plan) gives the same number; the result does not
//! depend on surrounding blanks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use tollguard_core::numbering::{DialPlan, DialPlanSpec, Dialled};

static PLANS: LazyLock<Vec<(&'static str, DialPlan)>> = LazyLock::new(|| {
    vec![
        ("NL", DialPlan::for_country("NL").unwrap()),
        (
            "US, outside line 9",
            DialPlan::from_spec(&DialPlanSpec {
                country: Some("US".into()),
                outside_line: Some("9".into()),
                extension_lengths: Some(vec![3, 4]),
                ..DialPlanSpec::default()
            })
            .unwrap(),
        ),
        ("international only", DialPlan::international_only()),
        ("RU", DialPlan::for_country("RU").unwrap()),
        (
            "DE, outside line 0",
            DialPlan::from_spec(&DialPlanSpec {
                country: Some("DE".into()),
                outside_line: Some("0".into()),
                extension_lengths: Some(vec![2, 3]),
                ..DialPlanSpec::default()
            })
            .unwrap(),
        ),
    ]
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (name, plan) in PLANS.iter() {
        let got = plan.normalise(&text);
        assert_eq!(
            plan.normalise(&format!(" {text}\t")),
            got,
            "plan {name}: blanks around {text:?} changed the result"
        );
        if let Dialled::E164(e) = got {
            let digits = e.digits();
            assert!(
                (1..=15).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit),
                "plan {name}: {text:?} gave {e:?}"
            );
            assert_ne!(digits[0], b'0', "plan {name}: {text:?} gave {e:?}, starting with 0");
            let plus = e.to_string();
            assert_eq!(
                plan.normalise(&plus),
                Dialled::E164(e),
                "plan {name}: {text:?} gave {plus}, which does not normalise to itself"
            );
        }
    }
});
