"""The paper's numbers as data agree with each other and with what the paper's text states."""

from pathlib import Path

import pytest
import yaml

TABLES = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "paper_figures" / "reference" / "kosmos1_tables.yaml").read_text()
)


def test_every_table_is_well_formed():
    assert {"table2", "table4", "table6", "table13", "table14", "table16"} <= TABLES.keys()
    for name, table in TABLES.items():
        assert table["caption"] and table["status"]
        for model, values in table["rows"].items():
            assert len(values) == len(table["columns"]), (name, model)


def test_cross_references_in_the_paper_hold():
    # Table 14's instruction-tuned row is the main Kosmos-1 model of Tables 2 and 4.
    tuned = TABLES["table14"]["rows"]["Kosmos-1 (with language-only instruction tuning)"]
    t2, t4 = TABLES["table2"]["rows"]["Kosmos-1 (1.6B)"], TABLES["table4"]["rows"]["Kosmos-1"]
    assert tuned == [t2[0], t2[2], t4[0], t4[1]]
    # Body text: instruction tuning gives +1.9 Flickr30k, +4.3 VQAv2, +1.3 VizWiz (and COCO drops 2.9).
    without = TABLES["table14"]["rows"]["w/o language-only instruction tuning"]
    assert [round(a - b, 1) for a, b in zip(tuned, without)] == [-2.9, 1.9, 4.3, 1.3]
    # Body text: Kosmos-1 gains +1.5, +14.7, +9.7 over the LLM on visual commonsense.
    rows = TABLES["table16"]["rows"]
    gains = [round(a - b, 1) for a, b in zip(rows["Kosmos-1 (language-only)"], rows["LLM (language-only)"])]
    assert gains == [1.5, 14.7, 9.7]
    # Body text: CoT adds 5.8 points; Raven variants are 5.3 and 9.3 points above random (16.7%).
    cot = TABLES["table9"]["rows"]
    assert round(cot["Kosmos-1 w/ multimodal CoT"][0] - cot["Kosmos-1"][0], 1) == 5.8
    assert cot["Kosmos-1"][0] == TABLES["table7"]["rows"]["Kosmos-1"][1]  # the same Rendered SST-2 number
    raven = TABLES["table6"]["rows"]
    assert [round(v[0] - 100 / 6, 1) for k, v in raven.items() if k != "Random choice"] == [5.3, 9.3]
    # Table 13's averages are the column means (to the printed precision).
    t13 = TABLES["table13"]["rows"]
    tasks = [k for k in t13 if k != "Average"]
    for col in range(6):
        assert sum(t13[t][col] for t in tasks) / len(tasks) == pytest.approx(t13["Average"][col], abs=0.06)
