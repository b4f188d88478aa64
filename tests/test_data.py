import base64
import io
import json
import subprocess
import sys
import tarfile

import pytest
import torch
from PIL import Image

from toolkit.data.images import ImageTransform, encode_png
from toolkit.data.mixture import Mixture, StreamConfig
from toolkit.data.records import (
    DocRecord,
    InstructionRecord,
    PairRecord,
    TextRecord,
    read_interleaved,
    read_pairs,
    read_text,
)
from toolkit.data.sequences import SequenceBuilder, TextPacker
from toolkit.data.shards import ShardWriter, SkipLog, iter_tar
from toolkit.data.tokenizer import load_tokenizer, train_tokenizer
from toolkit.model.config import SpecialTokens

CORPUS = [
    "the cat sat on the mat. the dog ran in the park!",
    "a red ball is round. a blue box is square? yes it is.",
    "positive words are good. negative words are bad.",
] * 20


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(CORPUS + ["Question: Answer: picture"], vocab_size=300)


def _png(colour=(200, 30, 30), size=8):
    return encode_png(Image.new("RGB", (size, size), colour))


def test_tokenizer_reserves_the_model_special_ids_and_round_trips(tok, tmp_path):
    assert tok.special == SpecialTokens()  # <pad> 0, <s> 1, </s> 2, <unk> 3, <image> 4, </image> 5, <image_pad> 6
    ids = tok.encode("the cat sat on the mat.")
    assert min(ids) > 6 and tok.decode(ids) == "the cat sat on the mat."
    tok.save(tmp_path / "tokenizer.json")
    again = load_tokenizer(tmp_path)
    assert again.encode("a red ball") == tok.encode("a red ball") and again.vocab_size == tok.vocab_size
    # Training is deterministic.
    assert train_tokenizer(CORPUS + ["Question: Answer: picture"], vocab_size=300).hf.to_str() == tok.hf.to_str()
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_tokenizer(tmp_path / "missing")


def test_foreign_tokenizer_without_xmt_specials(tmp_path):
    from tokenizers import Tokenizer as HF
    from tokenizers import models, pre_tokenizers, trainers

    hf = HF(models.BPE(unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    hf.train_from_iterator(
        CORPUS, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    )
    hf.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match="missing special tokens <pad>, <image>, </image>, <image_pad>"):
        load_tokenizer(tmp_path)
    tok = load_tokenizer(tmp_path, add_missing_special=True)
    base = hf.get_vocab_size()
    assert (tok.special.unk, tok.special.bos, tok.special.eos) == (0, 1, 2)
    assert sorted([tok.special.pad, tok.special.image, tok.special.image_end, tok.special.image_pad]) == list(
        range(base, base + 4)
    )
    assert tok.vocab_size == base + 4


def test_full_sentence_packing_keeps_sentences_whole(tok):
    packer = TextPacker(tok, max_len=16)
    seqs = []
    for doc in CORPUS[:6]:
        seqs += packer.add(TextRecord(doc))
    sentences = {
        tuple(tok.encode(s))
        for d in CORPUS[:6]
        for s in d.replace("!", "!|").replace(". ", ".|").replace("? ", "?|").split("|")
    }
    for seq in seqs:
        assert seq.ids[0] == tok.special.bos and seq.ids[-1] == tok.special.eos and len(seq.ids) <= 16
        body = [t for t in seq.ids[1:] if t != tok.special.eos]
        # The body is a concatenation of whole sentences.
        pos = 0
        while pos < len(body):
            match = [s for s in sentences if tuple(body[pos : pos + len(s)]) == s]
            assert match, tok.decode(body[pos:])
            pos += max(len(s) for s in match)
    # Document ends are marked with </s> inside sequences when documents share a sequence.
    assert sum(seq.ids.count(tok.special.eos) for seq in seqs) >= len(seqs)


def test_long_sentence_is_split_across_sequences(tok):
    packer = TextPacker(tok, max_len=8)
    seqs = packer.add(TextRecord("the cat sat on the mat and the dog ran in the park and the cat sat."))
    assert len(seqs) >= 2 and all(len(s.ids) <= 8 for s in seqs)


def test_caption_interleaved_and_instruction_sequences(tok):
    n = 3
    builder = SequenceBuilder(tok, n, max_len=48, transform=ImageTransform(8), max_images=2)
    sp = tok.special
    cap = builder.caption(PairRecord(_png(), "a red ball", "x"))
    assert cap.ids[:2] == [sp.bos, sp.image] and cap.ids[2 : 2 + n] == [sp.image_pad] * n
    assert cap.ids[2 + n] == sp.image_end and cap.ids[-1] == sp.eos and len(cap.images) == 1
    assert cap.images[0].shape == (3, 8, 8)
    # Three images but max_images=2: the third is dropped, its text kept.
    doc = builder.document(DocRecord([_png(), "a red ball.", _png(), "a blue box.", _png(), "the cat."], "x"))
    assert doc.ids.count(sp.image) == 2 and len(doc.images) == 2
    assert tok.decode(doc.ids).endswith("the cat.")
    # Truncation never cuts an image span: a budget that ends inside the second span drops it whole.
    tight = SequenceBuilder(
        tok, n, max_len=len(tok.encode("a red ball.")) + 1 + (n + 2) + 3, transform=ImageTransform(8)
    )
    cut = tight.document(DocRecord([_png(), "a red ball.", _png(), "a blue box."], "x"))
    assert cut.ids.count(sp.image) == cut.ids.count(sp.image_end) == 1
    assert cut.ids.count(sp.image_pad) == n and len(cut.images) == 1 and len(cut.ids) <= tight.max_len
    ins = builder.instruction(InstructionRecord("Answer the question.", "Question: what is red? Answer:", "a ball"))
    prompt_len = 1 + len(tok.encode("Answer the question.\nQuestion: what is red? Answer:"))
    assert ins.loss_mask == [False] * prompt_len + [True] * (len(ins.ids) - prompt_len)
    assert ins.ids[prompt_len:] == tok.encode("a ball") + [sp.eos]


def _write_laion(path, n, corrupt=()):
    with ShardWriter(path.parent, path.stem, max_samples=10_000) as w:
        for i in range(n):
            image = b"not an image" if i in corrupt else _png((i * 20 % 255, 10, 10))
            w.write(
                f"{i:06d}",
                {"jpg": image, "txt": f"{path.stem} caption {i}".encode(), "json": json.dumps({"key": i}).encode()},
            )
    return w.paths


def test_laion_style_pairs_and_skipping_of_corrupt_images(tok, tmp_path):
    (shard,) = _write_laion(tmp_path / "laion", 6, corrupt={2})
    skips = SkipLog()
    records = list(read_pairs(shard, skips))
    assert [r.caption for r in records] == [f"laion caption {i}" for i in range(6)]
    builder = SequenceBuilder(tok, 2, 16, ImageTransform(8), skips=skips)
    seqs = [builder.caption(r) for r in records]
    assert [s is None for s in seqs] == [False, False, True, False, False, False]
    assert skips.counts["corrupt image"] == 1 and "000002" in skips.first["corrupt image"]


def test_truncated_tar_member_is_skipped_and_counted(tmp_path):
    (shard,) = _write_laion(tmp_path / "laion", 5)
    data = shard.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2 + 100])  # ends inside a member
    skips = SkipLog()
    keys = [k for k, _ in iter_tar(cut, skips)]
    assert 0 < len(keys) < 5 and keys == [f"{i:06d}" for i in range(len(keys))]
    assert skips.counts["truncated or corrupt shard"] == 1 and str(cut) in skips.first["truncated or corrupt shard"]


def test_mmc4_style_documents_with_base64_or_member_images(tmp_path):
    path = tmp_path / "mmc4.tar"
    with tarfile.open(path, "w") as tar:

        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        doc1 = {
            "text_list": ["first.", "second.", "third."],
            "image_info": [
                {"image_name": "a.jpg", "matched_text_index": 1, "image_base64": base64.b64encode(_png()).decode()}
            ],
        }
        add("doc1.json", json.dumps(doc1).encode())
        doc2 = {"text_list": ["alpha.", "beta."], "image_info": [{"image_name": "img0.png", "matched_text_index": 0}]}
        add("doc2.json", json.dumps(doc2).encode())
        add("doc2.img0.png", _png((0, 0, 200)))
        add("doc3.json", b"{broken")
    skips = SkipLog()
    docs = list(read_interleaved(path, skips))
    assert [[p if isinstance(p, str) else "IMG" for p in d.parts] for d in docs] == [
        ["first.", "IMG", "second.", "third."],
        ["IMG", "alpha.", "beta."],
    ]
    assert skips.counts["malformed interleaved document"] == 1


def test_jsonl_text_skips_malformed_lines(tmp_path):
    path = tmp_path / "text.jsonl"
    path.write_text('{"text": "one."}\nnot json\n{"other": 1}\n{"text": "two."}\n')
    skips = SkipLog()
    assert [r.text for r in read_text(path, skips)] == ["one.", "two."]
    assert skips.total == 2


def _mixture_inputs(tmp_path, tok):
    texts = tmp_path / "text"
    texts.mkdir(exist_ok=True)
    for f in range(3):
        lines = [json.dumps({"text": f"doc {f} {i}. the cat sat on the mat."}) for i in range(7)]
        (texts / f"t{f}.jsonl").write_text("\n".join(lines) + "\n")
    _write_laion(tmp_path / "p0", 9)
    _write_laion(tmp_path / "p1", 5)
    return [
        StreamConfig("text", "text", [str(texts / "*.jsonl")], batch_size=3),
        StreamConfig("pairs", "pairs", [str(tmp_path / "p*.tar")], batch_size=2),
    ]


def test_two_ranks_see_disjoint_data_and_everything_once_per_epoch(tmp_path, tok):
    streams = _mixture_inputs(tmp_path, tok)
    seen = []
    for rank in range(2):
        mix = Mixture(
            streams, tok, num_image_tokens=2, max_len=32, transform=ImageTransform(8), seed=3, rank=rank, world_size=2
        )
        pairs = mix.streams["pairs"].cursor
        captions = []
        while pairs.epoch == 0:
            captions.append(next(pairs).caption)
        seen.append(captions[:-1])  # the last one belongs to epoch 1
    assert set(seen[0]).isdisjoint(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(
        [f"p0 caption {i}" for i in range(9)] + [f"p1 caption {i}" for i in range(5)]
    )


def test_missing_paths_and_empty_streams_are_clear_errors(tmp_path, tok):
    with pytest.raises(FileNotFoundError, match="no file matches .*nothing-here"):
        Mixture([StreamConfig("pairs", "pairs", [str(tmp_path / "nothing-here*.tar")])], tok, 2, 32)
    (tmp_path / "empty.jsonl").write_text("")
    mix = Mixture([StreamConfig("text", "text", [str(tmp_path / "empty.jsonl")])], tok, 2, 32)
    with pytest.raises(ValueError, match="stream 'text' has no records"):
        mix.next_batch()
    with pytest.raises(FileNotFoundError, match="shard not found: .*gone.tar"):
        list(iter_tar(tmp_path / "gone.tar"))


RESUME_SCRIPT = """
import json, sys, torch
sys.path.insert(0, {root!r})
from toolkit.data.images import ImageTransform
from toolkit.data.mixture import Mixture, StreamConfig
from toolkit.data.tokenizer import load_tokenizer
streams = [StreamConfig(**s) for s in json.loads({streams!r})]
mix = Mixture(streams, load_tokenizer({tok!r}), 2, 32, ImageTransform(8), seed=3)
mix.load_state_dict(json.load(open({state!r})))
out = []
for _ in range(4):
    b = mix.next_batch()
    out.append({{k: [v.input_ids.tolist(), None if v.images is None else round(float(v.images.sum()), 4)] for k, v in b.items()}})
print(json.dumps(out))
"""


def test_data_state_restored_in_a_new_process_gives_the_same_batches(tmp_path, tok):
    streams = _mixture_inputs(tmp_path, tok)
    tok.save(tmp_path / "tokenizer.json")
    mix = Mixture(streams, tok, 2, 32, ImageTransform(8), seed=3)
    for _ in range(5):  # mid-stream, past an epoch boundary of the pairs stream
        mix.next_batch()
    (tmp_path / "state.json").write_text(json.dumps(mix.state_dict()))
    expected = []
    for _ in range(4):
        b = mix.next_batch()
        expected.append(
            {
                k: [v.input_ids.tolist(), None if v.images is None else round(float(v.images.sum()), 4)]
                for k, v in b.items()
            }
        )
    script = RESUME_SCRIPT.format(
        root=str(__import__("pathlib").Path(__file__).parents[1]),
        streams=json.dumps([vars(s) for s in streams]),
        tok=str(tmp_path / "tokenizer.json"),
        state=str(tmp_path / "state.json"),
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == json.loads(json.dumps(expected))
    assert mix.streams["pairs"].cursor.epoch >= 1


def test_mixture_batches_have_per_stream_sizes_and_loss_masks(tmp_path, tok):
    streams = _mixture_inputs(tmp_path, tok)
    ins = tmp_path / "ins.jsonl"
    ins.write_text(
        "\n".join(
            json.dumps({"instruction": "Answer.", "input": f"Question: {i}? Answer:", "output": "yes"})
            for i in range(4)
        )
    )
    streams.append(StreamConfig("instructions", "instructions", [str(ins)], batch_size=2))
    batch = Mixture(streams, tok, 2, 32, ImageTransform(8)).next_batch()
    assert batch["text"].input_ids.shape[0] == 3 and batch["text"].images is None
    assert batch["pairs"].images.shape == (2, 3, 8, 8)
    assert batch["instructions"].loss_mask is not None and not batch["instructions"].loss_mask[:, :3].any()
    assert torch.equal(batch["pairs"].attention_mask, batch["pairs"].input_ids != tok.special.pad)


def test_rank_batches_together_are_the_single_process_batch(tmp_path, tok):
    streams = _mixture_inputs(tmp_path, tok)
    single = Mixture(
        [StreamConfig(s.name, s.kind, s.paths, s.batch_size * 2) for s in streams],
        tok,
        2,
        32,
        ImageTransform(8),
        seed=5,
    )
    ranks = [Mixture(streams, tok, 2, 32, ImageTransform(8), seed=5, rank=r, world_size=2) for r in range(2)]
    for _ in range(6):
        full = single.next_batch()
        parts = [m.next_batch() for m in ranks]
        for name in full:
            whole = sorted(tuple(row[m].tolist()) for row, m in zip(full[name].input_ids, full[name].attention_mask))
            split = sorted(
                tuple(row[m].tolist()) for p in parts for row, m in zip(p[name].input_ids, p[name].attention_mask)
            )
            assert whole == split, name


def _ids(batch):
    return {name: b.input_ids.tolist() for name, b in batch.items()}


def test_a_streams_order_depends_on_the_seed_and_its_name_only(tmp_path, tok):
    text, pairs = _mixture_inputs(tmp_path, tok)
    # The text stream's first file differs between seeds, so file order is what is compared.
    alone = Mixture([text], tok, 2, 32, ImageTransform(8), seed=1)
    after = Mixture([pairs, text], tok, 2, 32, ImageTransform(8), seed=1)
    before = Mixture([text, pairs], tok, 2, 32, ImageTransform(8), seed=1)
    other_seed = Mixture([text], tok, 2, 32, ImageTransform(8), seed=2)
    a, b, c, d = ([m.next_batch() for _ in range(12)] for m in (alone, after, before, other_seed))
    assert [x["text"].input_ids.tolist() for x in a] == [x["text"].input_ids.tolist() for x in b]
    assert [x["text"].input_ids.tolist() for x in a] == [x["text"].input_ids.tolist() for x in c]
    assert [x["pairs"].input_ids.tolist() for x in b] == [x["pairs"].input_ids.tolist() for x in c]
    assert [x["text"].input_ids.tolist() for x in a] != [x["text"].input_ids.tolist() for x in d]


def test_a_stage_that_reorders_its_streams_continues_each_stream_exactly(tmp_path, tok):
    text, pairs = _mixture_inputs(tmp_path, tok)
    first = Mixture([text, pairs], tok, 2, 32, ImageTransform(8), seed=4)
    for _ in range(5):
        first.next_batch()
    state = first.state_dict()
    expected = [_ids(first.next_batch()) for _ in range(6)]
    reordered = Mixture([pairs, text], tok, 2, 32, ImageTransform(8), seed=4)
    reordered.continue_streams(state)
    assert [_ids(reordered.next_batch()) for _ in range(6)] == expected
    # A stream the saved state does not name starts at its beginning.
    fresh_pairs = Mixture([pairs], tok, 2, 32, ImageTransform(8), seed=4).next_batch()["pairs"].input_ids.tolist()
    only_text = Mixture([text], tok, 2, 32, ImageTransform(8), seed=4)
    only_text.continue_streams({**state, "streams": {"text": state["streams"]["text"]}})
    both = Mixture([pairs, text], tok, 2, 32, ImageTransform(8), seed=4)
    both.continue_streams({**state, "streams": {"text": state["streams"]["text"]}})
    nxt = both.next_batch()
    assert nxt["pairs"].input_ids.tolist() == fresh_pairs and nxt["text"].input_ids.tolist() == expected[0]["text"]


def test_a_data_state_ordered_by_list_position_is_refused(tmp_path, tok):
    text, pairs = _mixture_inputs(tmp_path, tok)
    mix = Mixture([text, pairs], tok, 2, 32, ImageTransform(8), seed=4)
    state = mix.state_dict()
    del state["order"]  # written before streams were ordered by name
    with pytest.raises(ValueError, match="rule version 1.*start the run again"):
        Mixture([text, pairs], tok, 2, 32, ImageTransform(8), seed=4).load_state_dict(state)
