//! report.html: one self-contained page (plots inlined as SVG, no scripts, no network), with
//! each plot's PNG and SVG linked beside it.

use super::diagnose::Diagnostics;

/// `s` safe inside HTML text and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A plot on the page: file stem, caption, SVG text.
pub struct Figure {
    pub name: String,
    pub caption: String,
    pub svg: String,
}

const STYLE: &str = "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#222}\
h1{font-size:24px}h2{font-size:18px;margin-top:32px}table{border-collapse:collapse;margin:8px 0}\
td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}\
figure{margin:16px 0}figcaption{font-size:13px;color:#444;max-width:900px}.files{font-size:12px}\
svg{max-width:100%;height:auto}.note{font-size:13px;color:#555}";

/// The summary tables of one embedding set.
pub fn tables(d: &Diagnostics) -> String {
    let mut s = String::from(
        "<table class=\"retrieval\"><tr><th>direction</th><th>R@1</th><th>R@5</th><th>R@10</th><th>MedR</th><th>MeanR</th></tr>",
    );
    for (name, r) in [
        ("anchor → data", &d.retrieval.anchor_to_data),
        ("data → anchor", &d.retrieval.data_to_anchor),
    ] {
        s += &format!(
            "<tr><td>{name}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.1}</td><td>{:.2}</td></tr>",
            r.r1, r.r5, r.r10, r.medr, r.meanr
        );
    }
    s += "</table>";
    s += &format!(
        "<table class=\"volumes\"><tr><th>volumes</th><th>value</th></tr>\
         <tr><td>separation AUC, P(negative &gt; positive)</td><td>{:.4}</td></tr>\
         <tr><td>mean positive volume</td><td>{:.4}</td></tr>\
         <tr><td>mean over anchors of the smallest volume in their row</td><td>{:.4}</td></tr></table>",
        d.auc,
        d.positives.iter().map(|&v| v as f64).sum::<f64>() / d.n as f64,
        d.mean_row_min
    );
    s += "<table class=\"pairs\"><tr><th>modality pair</th><th>mutual k-NN (k = 10)</th><th>Spearman(cosine, volume)</th></tr>";
    for p in &d.pairs {
        s += &format!(
            "<tr><td>{} – {}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            escape(&d.names[p.a]),
            escape(&d.names[p.b]),
            p.mutual_knn,
            p.spearman
        );
    }
    s + "</table>"
}

/// The whole page.
pub fn page(title: &str, intro: &str, sections: &[(String, String)], figures: &[Figure]) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n<p class=\"note\">{intro}</p>\n",
        t = escape(title)
    );
    for (heading, html) in sections {
        s += &format!("<h2>{}</h2>\n{html}\n", escape(heading));
    }
    s += "<h2>Plots</h2>\n";
    for f in figures {
        s += &format!(
            "<figure id=\"{n}\" class=\"plot\">{svg}<figcaption>{c} \
             <span class=\"files\">(<a href=\"{n}.png\">PNG</a>, <a href=\"{n}.svg\">SVG</a>)</span>\
             </figcaption></figure>\n",
            n = escape(&f.name),
            svg = strip_xml_declaration(&f.svg),
            c = escape(&f.caption),
        );
    }
    s + "</body></html>\n"
}

/// Inline SVG must not carry an XML declaration.
fn strip_xml_declaration(svg: &str) -> &str {
    match svg.strip_prefix("<?xml") {
        Some(rest) => rest.find("?>").map_or(svg, |e| rest[e + 2..].trim_start()),
        None => svg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_strips() {
        assert_eq!(escape("<a & 'b'>"), "&lt;a &amp; &#39;b&#39;&gt;");
        assert_eq!(
            strip_xml_declaration("<?xml version=\"1.0\"?>\n<svg/>"),
            "<svg/>"
        );
        assert_eq!(strip_xml_declaration("<svg/>"), "<svg/>");
    }
}
