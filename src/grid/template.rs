//! A minimal template filler for the grid viewer's asset files
//! (`assets/grid/`): `{{name}}` placeholders are replaced by their values in
//! one pass over the template. Values are inserted as given and never scanned
//! again, so a value that happens to contain `{{…}}` stays as it is.

use crate::{Error, Result};

/// `template` with every `{{name}}` replaced by the value paired with `name`
/// in `values`. A placeholder without a value is an error (the templates are
/// built in, so that is a bug); a `{{` without a closing `}}` is kept as text.
pub(crate) fn fill(template: &str, values: &[(&str, &str)]) -> Result<String> {
    let mut out =
        String::with_capacity(template.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        let name = &after[..close];
        let value = values
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                Error::internal(format!("template placeholder {{{{{name}}}}} has no value"))
            })?;
        out.push_str(&rest[..open]);
        out.push_str(value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_placeholder_once() {
        let got = fill("<b>{{a}}</b>{{b}}-{{a}}", &[("a", "x"), ("b", "")]).unwrap();
        assert_eq!(got, "<b>x</b>-x");
    }

    #[test]
    fn text_without_placeholders_is_unchanged() {
        let text = "body{margin:0} function () { return {}; }\n";
        assert_eq!(fill(text, &[("a", "x")]).unwrap(), text);
        assert_eq!(fill("", &[]).unwrap(), "");
    }

    #[test]
    fn values_are_not_scanned_again() {
        let got = fill("{{a}}|{{b}}", &[("a", "{{b}}"), ("b", "{{a}}")]).unwrap();
        assert_eq!(got, "{{b}}|{{a}}");
    }

    #[test]
    fn unknown_placeholders_are_errors() {
        let err = fill("x {{nope}} y", &[("a", "x")]).unwrap_err();
        assert!(err.to_string().contains("{{nope}}"), "{err}");
    }

    #[test]
    fn unclosed_braces_stay_as_text() {
        assert_eq!(fill("a {{b", &[("b", "x")]).unwrap(), "a {{b");
        assert_eq!(fill("{{b}} {{", &[("b", "x")]).unwrap(), "x {{");
    }
}
