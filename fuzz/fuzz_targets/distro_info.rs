//! distro-info-data's ubuntu.csv: any bytes either parse or are refused;
//! the queries the collectors make on a parsed table do not panic.
#![no_main]

use chrono::NaiveDate;
use libfuzzer_sys::fuzz_target;
use ubuntu_metrics::sources::distro_info::DistroInfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = DistroInfo::parse(data) {
        let date = NaiveDate::from_ymd_opt(2026, 4, 23).unwrap();
        let _ = info.supported(date);
        let _ = info.supported_esm(date);
        let _ = info.devel(date);
        for r in info.all() {
            let _ = info.index_of(&r.series);
        }
    }
});
