#!/usr/bin/env python3
"""Reference fixtures for zoetrope's CLIP port, made with OpenAI's own code.

Run from the repository root with the project venv:

    /work/main/.venv/bin/python scripts/reference/gen_clip_fixtures.py

It writes (all committed):

* tests/fixtures/clip/{vit,rn}_weights.safetensors: small CLIP models built with
  `clip.model.CLIP` (one ViT tower, one ModifiedResNet tower), random weights with a
  fixed seed, non-trivial BatchNorm statistics, official state-dict key names;
* tests/fixtures/clip/{vit,rn}_io.safetensors: the inputs (images, token ids) and the
  official outputs (encode_image, encode_text, logits) in fp32 on CPU;
* tests/fixtures/clip/tokenizer_cases.json: strings and the ids `SimpleTokenizer.encode`
  gives, plus `clip.tokenize` results (with and without truncation);
* tests/fixtures/keys/clip_<name>.txt: "key shape" lines of the official state dict
  of each of the nine released CLIP architectures, built on the meta device;
* src/models/clip/html_tables.rs: the HTML5 entity tables Python's `html.unescape`
  and ftfy's `unescape_html` use, generated from the Python standard library.
"""

import html
import html.entities
import json
import os
import sys

import torch
from safetensors.torch import save_file

import clip
from clip import model as cm
from clip.simple_tokenizer import SimpleTokenizer, basic_clean, whitespace_clean

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures", "clip")
KEYS = os.path.join(ROOT, "tests", "fixtures", "keys")

# The official hyper-parameters of the released checkpoints, as clip.model.build_model
# infers them from the state dicts: embed_dim, image_resolution, vision_layers,
# vision_width, vision_patch_size, context_length, vocab_size, transformer_width,
# transformer_heads, transformer_layers.
OFFICIAL = {
    "RN50": (1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12),
    "RN101": (512, 224, (3, 4, 23, 3), 64, None, 77, 49408, 512, 8, 12),
    "RN50x4": (640, 288, (4, 6, 10, 6), 80, None, 77, 49408, 640, 10, 12),
    "RN50x16": (768, 384, (6, 8, 18, 8), 96, None, 77, 49408, 768, 12, 12),
    "RN50x64": (1024, 448, (3, 15, 36, 10), 128, None, 77, 49408, 1024, 16, 12),
    "ViT-B/32": (512, 224, 12, 768, 32, 77, 49408, 512, 8, 12),
    "ViT-B/16": (512, 224, 12, 768, 16, 77, 49408, 512, 8, 12),
    "ViT-L/14": (768, 224, 24, 1024, 14, 77, 49408, 768, 12, 12),
    "ViT-L/14@336px": (768, 336, 24, 1024, 14, 77, 49408, 768, 12, 12),
}


def key_file_name(name):
    return "clip_" + name.replace("/", "-").replace("@", "-") + ".txt"


def write_keys():
    os.makedirs(KEYS, exist_ok=True)
    for name, hp in OFFICIAL.items():
        with torch.device("meta"):
            model = cm.CLIP(*hp)
        lines = []
        for k, v in model.state_dict().items():
            lines.append(k + " " + "x".join(str(d) for d in v.shape) if v.dim() else k + " scalar")
        with open(os.path.join(KEYS, key_file_name(name)), "w") as f:
            f.write("\n".join(lines) + "\n")
        print("keys", name, len(lines))


def randomize(model, gen):
    """Random but well-scaled weights everywhere, including BN statistics."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(int(torch.randint(1, 1000, (), generator=gen)))
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.2)
            elif name == "logit_scale":
                t.fill_(2.5)
            elif t.dim() == 1 and ("ln_" in name or ".bn" in name or "downsample.1" in name):
                if name.endswith("weight"):
                    t.copy_(1.0 + 0.2 * torch.randn(t.shape, generator=gen))
                else:
                    t.copy_(0.2 * torch.randn(t.shape, generator=gen))
            elif t.dim() == 1:
                t.copy_(0.05 * torch.randn(t.shape, generator=gen))
            else:
                fan_in = t[0].numel() if t.dim() > 1 else t.numel()
                t.copy_(torch.randn(t.shape, generator=gen) / fan_in ** 0.5)


def make_text(gen, n, ctx, vocab):
    """Token rows like clip.tokenize's: start, ids, end (the largest id), zero padding."""
    rows = torch.zeros(n, ctx, dtype=torch.long)
    lengths = [3, ctx, 7, 1 + ctx // 2][:n]
    for i, length in enumerate(lengths):
        body = torch.randint(1, vocab - 2, (length - 2,), generator=gen)
        rows[i, 0] = vocab - 2
        rows[i, 1:length - 1] = body
        rows[i, length - 1] = vocab - 1
    return rows


def write_model(tag, hp, gen):
    torch.manual_seed(1234)
    model = cm.CLIP(*hp).eval()
    randomize(model, gen)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(FIX, f"{tag}_weights.safetensors"))
    res = hp[1]
    image = torch.randn(3, 3, res, res, generator=gen)
    text = make_text(gen, 4, hp[5], hp[6])
    with torch.no_grad():
        img = model.encode_image(image)
        txt = model.encode_text(text)
        logits_per_image, _ = model(image, text)
    save_file(
        {
            "image": image.contiguous(),
            "text": text.contiguous(),
            "image_features": img.contiguous(),
            "text_features": txt.contiguous(),
            "logits_per_image": logits_per_image.contiguous(),
        },
        os.path.join(FIX, f"{tag}_io.safetensors"),
    )
    n = sum(v.numel() for v in sd.values())
    print(tag, "params", n, "image", tuple(img.shape), "text", tuple(txt.shape))


TOKENIZER_TEXTS = [
    "a photograph of a bright and beautiful spring day, by Trey Ratcliff",
    "a painting of a cold wintery landscape, by Rembrandt",
    "text",
    "watermark",
    "",
    "   ",
    "Hello, World!",
    "A RED apple on a table.",
    "don't stop believin' -- it's 3:45pm, we'll see; you're I'm they've he'd",
    "DON'T SHOUT IT'S FINE",
    "numbers 1234567890 and 3.14159 and 1,000,000",
    "Café crème brûlée à la française, naïve façade, Ångström, Øresund",
    "Straße über Köln — “quotes” and ‘single quotes’ … ellipsis",
    "日本語のテキストと漢字",
    "中文提示：一只猫坐在月亮上",
    "Привет, мир! Это тест.",
    "ΟΔΟΣ Σίσυφος ΑΣ",
    "مرحبا بالعالم",
    "emoji 🐱🚀✨ 👩‍👩‍👧 and flags 🇫🇷 🇯🇵",
    "tabs\tand\nnewlines\r\nand  multiple   spaces",
    "HTML &amp; entities &lt;b&gt; &quot;quoted&quot; &#39;apos&#39; &#x263A; &eacute; &copy;",
    "double escaped &amp;amp; &amp;lt;tag&amp;gt;",
    "no semicolon &amp and &copy2021 &notit; &notin; &frac12;",
    "with < sign &amp; stays &lt; once",
    "line one &amp; two\nline <two> &amp; three\nline &amp; four",
    "&amp;eacute; &AMP; &Eacute; &eacute &EACUTE",
    "P&EACUTE;REZ &NTILDE; &nTILDE;",
    "numeric &#0; &#128; &#150; &#x110000; &#xD800; &#65;&#66;&#67; &#1114111;",
    "ligatures ﬁne ﬂower ﬀ ﬃ ĳ",
    "ＬＯＵＤ　ＮＯＩＳＥＳ ｶﾀｶﾅ",
    "combining e\u0301 and a\u0308 n\u0303",
    "c1 controls \x93quoted\x94 \x85",
    "control\x00chars\x07here\x7f and bom \ufeff and zero\u200bwidth",
    "ansi \x1b[31mred\x1b[0m text",
    "nbsp\u00a0here\u2003em\u3000ideo \u2028line",
    "unit\x1fsep\x1cfile",
    "ℌ𝔢𝔩𝔩𝔬 math ℝ² ½ ⅓ Ⅷ",
    "ſtrange 'S capital apostrophe ''quotes''",
    "<|startoftext|> special <|endoftext|> tokens",
    "trending on artstation, unreal engine 4k, 8K UHD, highly-detailed #art @artist",
    "a_b-c.d/e\\f|g:h;i?j!k(l)[m]{n}<o>p*q+r=s~t`u^v",
    "x" * 200,
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    "Mixed CASE WoRdS and İstanbul",
    " ".join(["word"] * 100),
    "mojibake cafÃ© â€œquotedâ€",
]


FUZZ_PIECES = [
    "a", "The", "cat", "DOG", " ", "  ", "\t", "\n", "\r\n", ",", ".", "!", "?", "'s", "'LL", "--",
    "42", "3.5", "½", "é", "Ü", "ß", "ø", "ñ", "ç", "ł", "日本", "猫", "한국어", "ภาษา", "עברית",
    "emoji", "🎨", "🌅", "🏔️", "❤", "&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&nbsp;", "&hellip;",
    "&eacute;", "&#x1F600;", "“", "”", "‘", "’", "…", "–", "—", "ﬁ", "Ｗ", "ｗ", "\u00a0",
    "\u3000", "e\u0301", "\u200b", "\u200d", "<", ">", "/", "\\", "_", "#", "@", "$", "%",
    "artstation", "4k", "HDR", "8K", "unreal", "octane render", "by Greg Rutkowski", "trending",
]


def fuzz_texts(n, seed):
    """Prompt-like random strings built from the pieces above (fixed seed)."""
    import random

    rng = random.Random(seed)
    return ["".join(rng.choice(FUZZ_PIECES) for _ in range(rng.randint(1, 14))) for _ in range(n)]


def write_tokenizer():
    import ftfy

    tok = SimpleTokenizer()
    cases = []
    for t in TOKENIZER_TEXTS + fuzz_texts(300, 7):
        clean = whitespace_clean(basic_clean(t)).lower()
        # Whether ftfy's mojibake repair (not reproduced in Rust) changes the text.
        mojibake = ftfy.fix_text(t) != ftfy.fix_text(t, fix_encoding=False)
        case = {"text": t, "clean": clean, "ids": tok.encode(t), "mojibake": mojibake}
        if mojibake:
            # The official pipeline with only the mojibake repair turned off: what
            # zoetrope reproduces exactly.
            import clip.simple_tokenizer as st

            orig = st.ftfy.fix_text
            st.ftfy.fix_text = lambda x: orig(x, fix_encoding=False)
            try:
                case["clean_without_fix_encoding"] = whitespace_clean(st.basic_clean(t)).lower()
                case["ids_without_fix_encoding"] = tok.encode(t)
            finally:
                st.ftfy.fix_text = orig
        cases.append(case)
    tokenize_cases = []
    for texts, ctx, trunc in [
        (["a cat", "a photograph of a bright and beautiful spring day"], 77, False),
        ([" ".join(["word"] * 100)], 77, True),
        (["a b c d e f g h"], 8, True),
        (["a b c d e f"], 8, False),
    ]:
        toks = clip.tokenize(texts, context_length=ctx, truncate=trunc)
        tokenize_cases.append({"texts": texts, "context": ctx, "truncate": trunc, "ids": toks.tolist()})
    with open(os.path.join(FIX, "tokenizer_cases.json"), "w", encoding="utf-8") as f:
        json.dump({"encode": cases, "tokenize": tokenize_cases}, f, ensure_ascii=True, indent=1)
    print("tokenizer cases", len(cases))


def rust_str(s):
    out = []
    for ch in s:
        c = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif 0x20 <= c < 0x7F:
            out.append(ch)
        else:
            out.append("\\u{%x}" % c)
    return '"' + "".join(out) + '"'


def write_html_tables():
    html5 = sorted(html.entities.html5.items())
    # ftfy's extra entities: all-caps spellings of lower-case names (see
    # ftfy.chardata._build_html_entities), decoded to the upper-cased character.
    upper = []
    for name, char in html.entities.html5.items():
        if name.endswith(";") and name == name.lower():
            entity_upper = "&" + name.upper()
            if html.unescape(entity_upper) == entity_upper:
                upper.append((name.upper(), char.upper()))
    upper.sort()
    invalid_charrefs = sorted(html._invalid_charrefs.items())
    invalid_codepoints = sorted(html._invalid_codepoints)
    path = os.path.join(ROOT, "src", "models", "clip", "html_tables.rs")
    with open(path, "w", encoding="utf-8") as f:
        f.write("//! HTML5 character-reference tables, generated by\n")
        f.write("//! `scripts/reference/gen_clip_fixtures.py` from Python's `html` module\n")
        f.write("//! (the data of the WHATWG HTML standard). Do not edit by hand.\n\n")
        f.write("/// `html.entities.html5`: entity name (without `&`) to replacement, sorted by name.\n")
        f.write("pub(crate) static HTML5: &[(&str, &str)] = &[\n")
        for k, v in html5:
            f.write(f"    ({rust_str(k)}, {rust_str(v)}),\n")
        f.write("];\n\n")
        f.write("/// ftfy's all-caps entity spellings (name without `&`), sorted by name.\n")
        f.write("pub(crate) static FTFY_UPPER: &[(&str, &str)] = &[\n")
        for k, v in upper:
            f.write(f"    ({rust_str(k)}, {rust_str(v)}),\n")
        f.write("];\n\n")
        f.write("/// `html._invalid_charrefs`: numeric references replaced like browsers do.\n")
        f.write("pub(crate) static INVALID_CHARREFS: &[(u32, &str)] = &[\n")
        for k, v in invalid_charrefs:
            f.write(f"    (0x{k:x}, {rust_str(v)}),\n")
        f.write("];\n\n")
        f.write("/// `html._invalid_codepoints`: numeric references that decode to nothing.\n")
        f.write("pub(crate) static INVALID_CODEPOINTS: &[u32] = &[\n")
        for i in range(0, len(invalid_codepoints), 8):
            f.write("    " + ", ".join(f"0x{c:x}" for c in invalid_codepoints[i:i + 8]) + ",\n")
        f.write("];\n")
    print("html tables", len(html5), len(upper))


def main():
    os.makedirs(FIX, exist_ok=True)
    what = sys.argv[1:] or ["keys", "models", "tokenizer", "html"]
    if "keys" in what:
        write_keys()
    if "models" in what:
        gen = torch.Generator().manual_seed(20240229)
        # ViT tower: width 128 -> 2 heads (width // 64), 2 layers, 32 px, patch 8.
        # Text: context 16, vocab 512, width 128 -> 2 heads, 2 layers.
        write_model("vit", (64, 32, 2, 128, 8, 16, 512, 128, 2, 2), gen)
        # ModifiedResNet: width 8 -> embed 256, heads 4, layers (2,1,1,1), 64 px.
        # Text: context 12, vocab 256, width 64, 1 head, 1 layer.
        write_model("rn", (48, 64, (2, 1, 1, 1), 8, None, 12, 256, 64, 1, 1), gen)
    if "tokenizer" in what:
        write_tokenizer()
    if "html" in what:
        write_html_tables()


if __name__ == "__main__":
    main()
