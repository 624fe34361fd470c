//! Numbers, money and times the Indonesian way: `Rp 1.250.000.000`, `Rp 1,25 M`, `8,5%`, WIB.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// `1250000000` → `Rp 1.250.000.000` (whole rupiah, dots between thousands).
pub fn rupiah(amount: Decimal) -> String {
    let negative = amount.is_sign_negative() && !amount.is_zero();
    let whole = amount.abs().round().to_i128().unwrap_or(0);
    let sign = if negative { "-" } else { "" };
    format!("{sign}Rp {}", group(whole))
}

/// `1250000000` → `Rp 1,25 M`, `625750000` → `Rp 625,8 jt`, smaller amounts in full.
pub fn rupiah_short(amount: Decimal) -> String {
    let value = amount.to_f64().unwrap_or(0.0);
    let abs = value.abs();
    let sign = if value < 0.0 { "-" } else { "" };
    if abs >= 1e12 {
        format!("{sign}Rp {} T", decimal_comma(abs / 1e12, 2))
    } else if abs >= 1e9 {
        format!("{sign}Rp {} M", decimal_comma(abs / 1e9, 2))
    } else if abs >= 1e6 {
        format!("{sign}Rp {} jt", decimal_comma(abs / 1e6, 1))
    } else {
        rupiah(amount)
    }
}

/// A quantity: `2500` → `2.500`, `12.5` → `12,5`.
pub fn number(value: Decimal) -> String {
    let rounded = value.round_dp(2).normalize();
    let whole = rounded.trunc().abs().to_i128().unwrap_or(0);
    let frac = (rounded.abs() - rounded.abs().trunc())
        .normalize()
        .to_string();
    let sign = if rounded.is_sign_negative() && !rounded.is_zero() {
        "-"
    } else {
        ""
    };
    match frac.strip_prefix("0.") {
        Some(digits) => format!("{sign}{},{digits}", group(whole)),
        None => format!("{sign}{}", group(whole)),
    }
}

/// A percentage with one decimal and a comma: `8.4567` → `8,5%`.
pub fn percent(value: f64) -> String {
    format!("{}%", decimal_comma(value, 1))
}

fn decimal_comma(value: f64, places: usize) -> String {
    let text = format!("{value:.places$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    text.replace('.', ",")
}

fn group(mut n: i128) -> String {
    if n == 0 {
        return "0".to_owned();
    }
    let mut groups = Vec::new();
    while n > 0 {
        groups.push(format!("{:03}", n % 1000));
        n /= 1000;
    }
    let mut out = groups.pop().unwrap().trim_start_matches('0').to_owned();
    if out.is_empty() {
        out.push('0');
    }
    for g in groups.iter().rev() {
        out.push('.');
        out.push_str(g);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn money_is_written_the_indonesian_way() {
        assert_eq!(rupiah(d("1250000000")), "Rp 1.250.000.000");
        assert_eq!(rupiah(d("32500000.40")), "Rp 32.500.000");
        assert_eq!(rupiah(d("0")), "Rp 0");
        assert_eq!(rupiah(d("-200")), "-Rp 200");
        assert_eq!(rupiah_short(d("1250000000")), "Rp 1,25 M");
        assert_eq!(rupiah_short(d("625750000")), "Rp 625,8 jt");
        assert_eq!(rupiah_short(d("950000")), "Rp 950.000");
    }

    #[test]
    fn quantities_and_percentages_use_a_decimal_comma() {
        assert_eq!(number(d("2500")), "2.500");
        assert_eq!(number(d("12.50")), "12,5");
        assert_eq!(number(d("-200")), "-200");
        assert_eq!(percent(8.456), "8,5%");
        assert_eq!(percent(7.0), "7%");
    }
}
