//! A synthetic CGRateS tariff plan with `n` destinations (an A-Z deck as a carrier would load it
//! into CGRateS): each destination its own rate (a first minute, then per second), peak and
//! off-peak rates for the first quarter, a `*disconnect` MaxCost on every tenth. Shared by the
//! benchmark and the allocation test.

use std::fmt::Write as _;
use std::path::Path;

/// Writes the plan into `dir` and returns `count` numbers to price (each under some prefix).
pub fn write(dir: &Path, n: usize, count: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let (mut dests, mut rates, mut drs, mut rps) =
        (String::new(), String::new(), String::new(), String::new());
    let ccs = ["31", "49", "44", "33", "34", "39", "1", "670", "881", "234", "91", "212"];
    let mut prefixes = Vec::with_capacity(n);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..n {
        let cc = ccs[i % ccs.len()];
        let p = format!("+{cc}{}", 100 + i / ccs.len());
        let rate = 1 + (i * 37) % 2000;
        writeln!(dests, "DST_{i},{p}").unwrap();
        writeln!(rates, "RT_{i},0.{:04},0.{rate:04},60s,60s,0s", i % 50).unwrap();
        writeln!(rates, "RT_{i},0,0.{rate:04},60s,1s,60s").unwrap();
        let max = if i % 10 == 0 { "5,*disconnect" } else { "," };
        writeln!(drs, "DR_{i},DST_{i},RT_{i},*up,4,{max}").unwrap();
        if i % 4 == 0 {
            writeln!(drs, "DR_{i}_OFF,DST_{i},RT_{i},*up,5,{max}").unwrap();
            writeln!(rps, "RP_AZ,DR_{i},PEAK,10\nRP_AZ,DR_{i}_OFF,OFFPEAK,10").unwrap();
        } else {
            writeln!(rps, "RP_AZ,DR_{i},*any,10").unwrap();
        }
        prefixes.push(p);
    }
    let w = |f: &str, t: &str| std::fs::write(dir.join(f), t).unwrap();
    w("Destinations.csv", &dests);
    w("Rates.csv", &rates);
    w("DestinationRates.csv", &drs);
    w("RatingPlans.csv", &rps);
    w("Timings.csv", "PEAK,*any,*any,*any,1;2;3;4;5,08:00:00\nOFFPEAK,*any,*any,*any,*any,00:00:00\n");
    w("RatingProfiles.csv", "cgrates.org,call,*any,2020-01-01T00:00:00Z,RP_AZ,\n");
    (0..count)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
            format!("{}{:06}", &prefixes[(r % n as u64) as usize][1..], r % 1_000_000)
        })
        .collect()
}
