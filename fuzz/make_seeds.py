#!/usr/bin/env python3
"""Writes the small seed corpora under fuzz/corpus/ (standard library only; a few fixture images
are copied from ../shared/fixtures/scorers/images when present). Run from anywhere."""
import json
import os
import shutil
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
FIXTURES = os.path.join(HERE, "..", "..", "shared", "fixtures")


def put(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    """tensors: name -> (dtype, shape, raw bytes), laid out in order."""
    header, blob = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob


def png(width, height, colour_type, bit_depth, rows, extra=b""):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = b"".join(b"\x00" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def bmp24(width, height):
    row = bytes((x * 40) % 256 for x in range(width * 3))
    row += b"\x00" * (-len(row) % 4)
    pixels = row * height
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    head = b"BM" + struct.pack("<IHHI", 14 + len(info) + len(pixels), 0, 0, 14 + len(info))
    return head + info + pixels


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)

    # safetensors: whole files, and a header alone (the target also parses the input as header text)
    f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.0)
    put("safetensors", "two_tensors.safetensors", safetensors(
        {"conv.weight": ("F32", [2, 2], f32), "conv.bias": ("BF16", [3], b"\x80\x3f\x00\x40\x00\x00")},
        {"format": "pt"}))
    put("safetensors", "empty_and_bool.safetensors", safetensors(
        {"e": ("F16", [0, 3], b""), "mask": ("BOOL", [2], b"\x01\x00"), "i": ("I64", [1], b"\x07" + b"\x00" * 7)}))
    put("safetensors", "metadata_only.safetensors", safetensors({}, {"a": "b"}))
    put("safetensors", "header.json",
        '{"__metadata__":{"format":"pt"},"a":{"dtype":"U8","shape":[2,1],"data_offsets":[0,2]},'
        '"b":{"dtype":"I32","shape":[],"data_offsets":[4,8]}}')

    # train config (JSON): official train.py spelling, kebab-case, Python constants
    put("train_config", "official.json", json.dumps({
        "pretrained_model_name_or_path": "runwayml/stable-diffusion-v1-5", "train_dataset": "data/expert",
        "batch_size": 4, "gradient_accumulation_steps": 16, "learning_rate": 1e-5, "margin": 0.001,
        "buffer_scheduler": "dpmsolver++", "mixed_precision": "bf16", "validation_dataset": "x",
        "score": "hpsv2", "use_ema": True, "adam_beta1": 0.9, "seed": None}, indent=1))
    put("train_config", "kebab.json", '{"num-steps": 32, "lr-warmup-steps": 8, "lr_scheduler": "cosine", '
        '"dist_timeout": 1.5e2, "resolution": 64, "device": "cpu"}')
    put("train_config", "python_constants.json", '{"max_grad_norm": Infinity, "margin": NaN, "seed": -1}')
    put("train_config", "wrong_types.json", '{"batch_size": 4.7, "random_flip": "true", "logdir": 3}')

    # flat TOML with the [train] table
    put("toml", "train.toml", "# dro train options\n[train]\nmodel = 'x'\n"
        "pretrained_model_name_or_path = \"models/sd15\"\ntrain_dataset = 'data/expert' # comment\n"
        "batch_size = 2\nlearning_rate = 1e-5\nrandom_flip = false\nbuffer-size = 8\n"
        "dist_timeout = 60.0\n")
    put("toml", "strings.toml", "logdir = \"a \\\"quoted\\\" # not a comment\"\nvariant = 'fp16'\n"
        "device = \"cuda:0\"\nseed = 12345678901\n")
    put("toml", "errors.toml", "[models]\nkey value\n")

    # images: generated PNG colour types / bit depths and a BMP, plus a few fixture images
    put("image", "gray1.png", png(8, 2, 0, 1, [b"\xa5", b"\x5a"]))
    put("image", "gray16.png", png(3, 2, 0, 16, [b"\x00\x01\x01\x00\xff\xff", b"\x12\x34\x56\x78\x9a\xbc"]))
    put("image", "graya8.png", png(2, 2, 4, 8, [b"\x10\xff\x20\x80", b"\x30\x00\x40\x7f"]))
    put("image", "graya16.png", png(1, 1, 4, 16, [b"\x12\x34\xff\xff"]))
    put("image", "rgb16.png", png(1, 2, 2, 16, [b"\x01\x02\x03\x04\x05\x06", b"\xff\x00\xff\x00\xff\x00"]))
    plte = struct.pack(">I", 6) + b"PLTE" + b"\xff\x00\x00\x00\x00\xff"
    plte += struct.pack(">I", zlib.crc32(b"PLTE\xff\x00\x00\x00\x00\xff"))
    trns = struct.pack(">I", 1) + b"tRNS\x80" + struct.pack(">I", zlib.crc32(b"tRNS\x80"))
    put("image", "palette_trns.png", png(2, 2, 3, 8, [b"\x00\x01", b"\x01\x00"], plte + trns))
    put("image", "rgb24.bmp", bmp24(3, 2))
    images = os.path.join(FIXTURES, "scorers", "images")
    for name in ["small_20x14.png", "palette_48x40.png", "gray_60x48.png", "photo_75x56.jpg"]:
        if os.path.exists(os.path.join(images, name)):
            shutil.copyfile(os.path.join(images, name), os.path.join(CORPUS, "image", name))

    # text for the tokenizers and the cleaners
    texts = {
        "prompt.txt": "A photo of an astronaut riding a horse on Mars, 4k, trending on artstation",
        "specials.txt": "<|startoftext|>it's <start_of_text> we'll <|endoftext|>  \t\n  <end_of_text>",
        "html.txt": "Fish &amp; chips &notit; &#x1F600; &#128512 &#0; &lt;b&gt; caf&eacute;",
        "mojibake.txt": "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows. Ã©tÃ© â€œquotedâ€ ï¬ ｆｕｌｌ",
        "unicode.txt": "ΣΑΣ İstanbul ǅ e\u0301 \u1e9b\u0323 한국어 日本語 ①½ \u0345 \U0001F600\u200d",
        "control.txt": "a\x1b[31mred\x1b[0m\r\nb\u2028c\x00d\u0085e\ufeff",
    }
    for name, text in texts.items():
        put("clip_tokenizer", name, text)
        put("unicode", name, text)
    invalid = b"\xff\xfe caf\xe9 \xed\xa0\x80\xed\xb0\x80 \xc0\xaf \xf4\x90\x80\x80 \xe2\x82"
    put("clip_tokenizer", "invalid.bin", invalid)
    put("unicode", "invalid.bin", invalid)


if __name__ == "__main__":
    main()
