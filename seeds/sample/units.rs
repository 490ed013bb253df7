//! Unit conversions for a recipe app: temperatures, weights and volumes.

/// A temperature scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    Celsius,
    Fahrenheit,
    Kelvin,
}

/// Convert a temperature between scales.
///
/// Returns `None` if the input is below absolute zero.
pub fn convert_temperature(value: f64, from: Scale, to: Scale) -> Option<f64> {
    let celsius = match from {
        Scale::Celsius => value,
        Scale::Fahrenheit => (value - 32.0) * 5.0 / 9.0,
        Scale::Kelvin => value - 273.15,
    };
    if celsius < -273.15 {
        return None;
    }
    Some(match to {
        Scale::Celsius => celsius,
        Scale::Fahrenheit => celsius * 9.0 / 5.0 + 32.0,
        Scale::Kelvin => celsius + 273.15,
    })
}

/// Grams to ounces (avoirdupois).
pub fn grams_to_ounces(grams: f64) -> f64 {
    grams / 28.349_523_125
}

/// US cups to millilitres.
pub fn cups_to_ml(cups: f64) -> f64 {
    cups * 236.588
}

/// Scale every ingredient amount of a recipe from `servings` to `wanted` servings.
pub fn scale_amounts(amounts: &[f64], servings: u32, wanted: u32) -> Vec<f64> {
    if servings == 0 {
        return amounts.to_vec();
    }
    let factor = wanted as f64 / servings as f64;
    amounts.iter().map(|a| a * factor).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boiling_point() {
        let f = convert_temperature(100.0, Scale::Celsius, Scale::Fahrenheit).unwrap();
        assert!((f - 212.0).abs() < 1e-9);
    }
}
