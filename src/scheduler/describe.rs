//! Cron expressions in words, for the common shapes; anything else is shown as written.

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// "every weekday at 09:00", "every 15 minutes", ... or "on the schedule `...`".
pub fn describe(expr: &str) -> String {
    let expr = expr.trim();
    match expr.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => return "every year on 1 January at 00:00".into(),
        "@monthly" => return "on the 1st of every month at 00:00".into(),
        "@weekly" => return "every Sunday at 00:00".into(),
        "@daily" | "@midnight" => return "every day at 00:00".into(),
        "@hourly" => return "every hour at :00".into(),
        _ => {}
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = fields[..] else {
        return format!("on the schedule `{expr}`");
    };
    let number = |s: &str| s.parse::<u32>().ok();
    if let (Some(step), "*", "*", "*", "*") = (
        minute.strip_prefix("*/").and_then(number),
        hour,
        dom,
        month,
        dow,
    ) {
        return format!("every {step} minutes");
    }
    if let (Some(m), "*", "*", "*", "*") = (number(minute), hour, dom, month, dow) {
        return format!("every hour at :{m:02}");
    }
    let (Some(m), Some(h)) = (number(minute), number(hour)) else {
        return format!("on the schedule `{expr}`");
    };
    let time = format!("{h:02}:{m:02}");
    match (dom, month, dow) {
        ("*", "*", "*") => format!("every day at {time}"),
        ("*", "*", "1-5") | ("*", "*", "mon-fri") | ("*", "*", "MON-FRI") => {
            format!("every weekday at {time}")
        }
        ("*", "*", "0,6") | ("*", "*", "6,0") | ("*", "*", "sat,sun") => {
            format!("every weekend day at {time}")
        }
        ("*", "*", d) if number(d).is_some_and(|d| d <= 7) => {
            format!(
                "every {} at {time}",
                DAYS[number(d).unwrap_or(0) as usize % 7]
            )
        }
        (d, "*", "*") if number(d).is_some() => format!("on day {d} of every month at {time}"),
        _ => format!("at {time} on the schedule `{expr}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn common_shapes_read_as_words() {
        assert_eq!(describe("0 9 * * 1-5"), "every weekday at 09:00");
        assert_eq!(describe("30 7 * * *"), "every day at 07:30");
        assert_eq!(describe("*/15 * * * *"), "every 15 minutes");
        assert_eq!(describe("5 * * * *"), "every hour at :05");
        assert_eq!(describe("0 18 * * 5"), "every Friday at 18:00");
        assert_eq!(describe("0 6 1 * *"), "on day 1 of every month at 06:00");
        assert_eq!(describe("@daily"), "every day at 00:00");
        assert_eq!(
            describe("0 9 1-7 * 1"),
            "at 09:00 on the schedule `0 9 1-7 * 1`"
        );
    }
}
