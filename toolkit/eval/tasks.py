"""Tasks as data: a loader and source, a prompt template, a scoring mode and a metric.

Templates use the paper's prompts verbatim. `<image>` places the example's next image; `{field}`
takes a field of the example. `mode` is `rank` (log-likelihood of each candidate after the prompt;
argmax), `generate` (greedy or beam search, stopped at `</s>`, optionally constrained to the
candidates), `cot` (generate a rationale with `rationale_prompt`, then rank with it in the prompt) or
`probe` (a linear probe on the prompt's last-token state, fitted on the grounded examples:
toolkit.eval.modes).
A task with a `builder` gets its per-candidate prompts from Python (Raven).
"""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.registry import Registry


@dataclass(frozen=True)
class TaskSpec:
    name: str
    family: str  # the paper's task family (captioning, vqa, raven, ...), used by tables
    loader: str  # a toolkit.eval.examples.LOADERS name
    source: str  # default data path; {world} is the run's world directory
    prompt: str = ""  # template: <image> markers and {fields}
    mode: str = "rank"  # rank | generate | cot | probe
    metric: str = "accuracy"  # accuracy | vqa | cider | roc_auc | em_f1
    candidates: tuple[str, ...] = ()  # a fixed candidate list (else each example's own)
    length_norm: bool = False  # rank by mean instead of summed log-probability per token
    max_new_tokens: int = 10
    num_beams: int = 1
    constrained: bool = False  # generate only sequences from the candidate list
    builder: str = ""  # a registered Python prompt builder replacing the template
    rationale_prompt: str = ""  # cot: stage-one prompt
    few_shot: bool = True  # demonstrations can be prepended
    demo: str = ""  # template of one demonstration (default: the prompt followed by the answer)
    positive: str = ""  # roc_auc: the candidate whose probability is the score
    report_yes_rate: bool = False  # binary Yes/No tasks: also report how often Yes was predicted
    paper_prompt: bool = True  # the template is the paper's
    paraphrases: tuple[str, ...] = ()  # more templates of the same question (`prompt` is the first)

    @property
    def templates(self) -> tuple[str, ...]:
        """Every phrasing of the task's question: the prompt, then its paraphrases."""
        return (self.prompt, *self.paraphrases)

    def __post_init__(self) -> None:
        if self.mode not in ("rank", "generate", "cot", "probe"):
            raise ValueError(f"task {self.name}: unknown mode '{self.mode}'; valid: rank, generate, cot, probe")
        if self.builder and self.few_shot and not self.demo:
            raise ValueError(
                f"task {self.name}: a builder task needs a `demo` template for demonstrations, or few_shot=False"
            )


TASKS: Registry[TaskSpec] = Registry("task")


def register(spec: TaskSpec) -> TaskSpec:
    TASKS.add(spec.name, spec)
    return spec


COLOURS = ("black", "blue", "brown", "green", "grey", "orange", "pink", "purple", "red", "white", "yellow")
VQA_PROMPT = "<image>Question: {question} Answer:"
SENTIMENT_PROMPT = "<image>Question: what is the sentiment of the opinion? Answer:"

# ---- the synthetic world: one task per family of the paper (DESIGN §3)
register(
    TaskSpec(
        "world-captioning",
        "captioning",
        "world_captioning",
        "{world}/eval/captioning.jsonl",
        "<image>An image of",
        mode="generate",
        metric="cider",
        max_new_tokens=12,
        num_beams=5,
    )
)
register(
    TaskSpec(
        "world-vqa",
        "vqa",
        "world_vqa",
        "{world}/eval/vqa.jsonl",
        VQA_PROMPT,
        mode="generate",
        metric="vqa",
        max_new_tokens=6,
    )
)
register(
    TaskSpec(
        "world-classification",
        "classification",
        "world_classification",
        "{world}/eval/classification.jsonl",
        "<image>The photo of the",
        mode="generate",
        metric="accuracy",
        max_new_tokens=6,
        num_beams=2,
    )
)
register(
    TaskSpec(
        "world-classification-constrained",
        "classification",
        "world_classification",
        "{world}/eval/classification.jsonl",
        "<image>The photo of the",
        mode="generate",
        metric="accuracy",
        max_new_tokens=6,
        num_beams=2,
        constrained=True,
    )
)
register(
    TaskSpec(
        "world-descriptions",
        "descriptions",
        "world_descriptions",
        "{world}/eval/descriptions.jsonl",
        "Description of {name1}: {desc1} Description of {name2}: {desc2} <image>Question:what is the name of "
        "{general} in the picture? Answer:",
        mode="generate",
        metric="accuracy",
        max_new_tokens=4,
    )
)
register(
    TaskSpec(
        "world-descriptions-names",
        "descriptions",
        "world_descriptions",
        "{world}/eval/descriptions.jsonl",
        "<image>Question:what is the name of the {general} in the picture, {name1} or {name2}? Answer:",
        mode="generate",
        metric="accuracy",
        max_new_tokens=4,
    )
)
register(TaskSpec("world-raven", "raven", "world_raven", "{world}/eval/raven.jsonl", builder="raven", few_shot=False))
register(
    TaskSpec(
        "world-rendered-sentiment",
        "ocr",
        "world_sentiment",
        "{world}/eval/rendered_sentiment.jsonl",
        SENTIMENT_PROMPT,
        candidates=("positive", "negative"),
    )
)
register(
    TaskSpec(
        "world-rendered-sentiment-cot",
        "cot",
        "world_sentiment",
        "{world}/eval/rendered_sentiment.jsonl",
        "<image>{rationale} Question: what is the sentiment of the opinion? Answer:",
        mode="cot",
        candidates=("positive", "negative"),
        rationale_prompt="<image>Introduce this picture in detail:",
        max_new_tokens=12,
        few_shot=False,
    )
)
register(
    TaskSpec(
        "world-language-mc",
        "language",
        "world_language_mc",
        "{world}/eval/language_mc.jsonl",
        "{context}",
        paper_prompt=False,
    )
)
register(
    TaskSpec(
        "world-text-qa",
        "instructions",
        "world_text_qa",
        "{world}/eval/text_qa.jsonl",
        "Answer the question.\nQuestion: {question} Answer:",  # the instruction stream's format
        mode="generate",
        metric="accuracy",
        max_new_tokens=6,
        paper_prompt=False,
    )
)
register(
    TaskSpec(
        "world-colour",
        "visual_commonsense",
        "world_colour",
        "{world}/eval/visual_commonsense_colour.jsonl",
        "The color of {object} is?",
        candidates=COLOURS,
    )
)
register(  # latent transfer: is a vision-only noun's colour readable from its text state?
    TaskSpec(
        "world-colour-latent",
        "visual_commonsense",
        "world_colour",
        "{world}/eval/visual_commonsense_colour.jsonl",
        "{object}",
        mode="probe",
        few_shot=False,
        paper_prompt=False,
    )
)
register(
    TaskSpec(
        "world-size",
        "visual_commonsense",
        "world_size",
        "{world}/eval/visual_commonsense_size.jsonl",
        "Is {item1} larger than {item2}?",
        candidates=("Yes", "No"),
        report_yes_rate=True,
    )
)
register(
    TaskSpec(
        "world-language-to-vision",
        "language_to_vision",
        "world_question_choice",
        "{world}/eval/language_to_vision.jsonl",
        VQA_PROMPT,
    )
)

WORLD_TASKS = tuple(name for name in TASKS.names() if name.startswith("world-"))


def describe_tasks() -> str:
    """Every registered task: family, scoring, few-shot and the data it reads (for `xmt eval --list`)."""
    rows = [("task", "family", "scoring", "few-shot", "phrasings", "data (--data TASK=PATH; {world}: the run's world)")]
    for name in TASKS.names():
        t = TASKS.get(name)
        scoring = f"{t.mode}{' constrained' if t.constrained else ''} / {t.metric}"
        few = "yes" if t.few_shot else "no"
        rows.append((name, t.family, scoring, few, str(len(t.templates)), f"{t.source} ({t.loader})"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows)
