"""`recdistill compare` on fabricated run folders: grouping, aggregation, paired tests, formats, plots."""

import copy
import io
import json
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from recdistill.errors import ConfigError, RecdistillError
from recdistill.reporting.compare import DEFAULT_METRICS, compare_main
from recdistill.reporting.runs import (aggregate, distinguishing_keys, group_keys, headline_metrics, higher_is_better,
                                       load_runs, with_group_columns)
from recdistill.reporting.significance import holm, is_per_user, paired_tests, significance

DISTILL = {
    "none": {"name": "none", "base_weight": 1.0, "terms": {}},
    "kl": {"name": "kl", "base_weight": 0.5, "terms": {"kl": {"weight": 0.5, "temperature": 2.0}}},
    "soft": {"name": "soft", "base_weight": 0.0, "terms": {"soft": {"weight": 1.0, "temperature": 1.0}}},
}
PARAMS = {"teacher": 120_000, "student": 9_000, "student_kd": 9_000}
N_USERS = 7  # the pairs of every paired test: users, each averaged over the seeds of its side


def base_config(seed, distill, folder):
    return {"experiment_name": "synthetic_kd", "task": "rating", "seed": seed, "teacher_seed": 0, "device": "cpu",
            "cache_dir": f"/tmp/cache{seed}", "train_student_alone": True, "resume": None,
            "dataset": {"name": "synthetic", "cache_dir": f"/tmp/cache{seed}", "local_dir": str(folder)},
            "split": {"name": "chrono_ratio", "ratios": [0.8, 0.1, 0.1]},
            "teacher": {"name": "rating_transformer", "dim": 32}, "student": {"name": "rating_transformer", "dim": 8},
            "distill": copy.deepcopy(DISTILL[distill]), "trainer": {"student": {"lr": 0.003, "epochs": 2}}}


def user_mae(role, mae, seed, user):
    """Per-user test MAE: the role's MAE plus a known, role- and seed-dependent offset."""
    shift = {"teacher": 0, "student": 1, "student_kd": 3}[role]
    return mae + 0.01 * ((user * (seed + 1) + shift) % 5 - 2)


def write_run(folder, seed=0, distill="kl", mae=None, config=None, roles=("teacher", "student", "student_kd")):
    """A run folder like the pipeline writes: metrics.json, per_user.parquet, history.csv, .hydra/."""
    mae = {"teacher": 0.60, "student": 0.80, "student_kd": 0.70, **(mae or {})}
    folder.mkdir(parents=True, exist_ok=True)
    config = config or base_config(seed, distill, folder)
    loss = "loss = 1.0 * ce" if distill == "none" else f"loss = {config['distill']['base_weight']} * ce + " \
        f"{next(iter(config['distill']['terms'].values()))['weight']} * {distill}"
    info = {"experiment": "synthetic_kd", "task": "rating", "seed": seed, "device": "cpu", "dataset": "synthetic",
            "teacher": "rating_transformer", "student": "rating_transformer", "distill": config["distill"]["name"],
            "loss_formula": loss, "teacher_key": f"teacher-{config.get('teacher_seed', 0)}",
            "student_key": f"student-{seed}",
            "split_key": "def456",
            "protocol": {"task": "rating", "split": {"name": "chrono_ratio", "ratios": [0.8, 0.1, 0.1]},
                         "history_length": 8},
            "stage_seconds": {"data": 0.5, "pretrain": 3.0, "extract": 0.25, "distill": 6.0, "evaluate": 1.0},
            "seconds": 10.75, "versions": {"torch": "2.13.0"}, "git": {"commit": "0123abcd", "dirty": False},
            "config": config}
    metrics, per_user, history = {"run": info}, [], []
    for role in roles:
        test = {"accuracy": 1.0 - mae[role], "mae": mae[role], "rmse": mae[role] + 0.2}
        metrics[role] = {"model": "rating_transformer", "valid": {k: v + 0.01 for k, v in test.items()}, "test": test,
                         "efficiency": {"params": PARAMS[role], "size_bytes": PARAMS[role] * 4,
                                        "latency_ms_median": 2.0 if role == "teacher" else 0.5,
                                        "latency_ms_p90": 2.5, "throughput_per_s": 5000.0, "batch_size": 256},
                         "training": {"best_epoch": 2, "best_valid": {"mae": mae[role]}, "epochs": 3, "seconds": 1.5,
                                      "from_cache": False}}
        for user in range(N_USERS):
            value = user_mae(role, mae[role], seed, user)
            per_user.append({"role": role, "user": user, "n": 2, "accuracy": 1.0 - value, "mae": value,
                             "rmse": value + 0.2})
        for epoch in range(1, 4):
            row = {"role": role, "epoch": epoch, "train_loss": 1.5 / epoch, "train_ce": 1.2 / epoch,
                   "valid_accuracy": 0.4, "valid_mae": mae[role] + 0.1 / epoch, "valid_rmse": 1.0, "seconds": 0.5}
            if role == "student_kd" and distill != "none":
                row[f"train_{distill}"] = 0.3 / epoch
            history.append(row)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    pd.DataFrame(per_user).to_parquet(folder / "per_user.parquet", index=False)
    pd.DataFrame(history).to_csv(folder / "history.csv", index=False)
    (folder / ".hydra").mkdir(exist_ok=True)
    (folder / ".hydra" / "overrides.yaml").write_text(f"- seed={seed}\n- distill={distill}\n")
    return folder


def write_failure(folder, message="task 'ranking' unknown; valid: ['rating']"):
    folder.mkdir(parents=True)
    (folder / "error.json").write_text(json.dumps({"error": "ConfigError", "message": message}))


@pytest.fixture
def sweep(tmp_path):
    """A multirun: kl (seeds 0-2), soft (seeds 0-1), none (seeds 0-2), and one failed job."""
    root = tmp_path / "multirun" / "synthetic_kd" / "2026-11-28_16-30-00"
    job = 0
    for distill, seeds, kd_maes in [("kl", [0, 1, 2], [0.70, 0.72, 0.74]), ("soft", [0, 1], [0.75, 0.78]),
                                    ("none", [0, 1, 2], [0.80, 0.80, 0.80])]:
        for seed, kd_mae in zip(seeds, kd_maes):
            write_run(root / str(job), seed=seed, distill=distill, mae={"student_kd": kd_mae})
            job += 1
    write_failure(root / str(job))
    return root


def summarise(paths, by=None, metrics=("mae",)):
    runs = load_runs(list(paths))
    keys = group_keys(runs, by)
    rows = with_group_columns(runs, keys)
    return runs, keys, rows, aggregate(rows, keys, list(metrics))


def test_runs_are_grouped_by_the_keys_that_differ(sweep):
    runs, keys, _, summary = summarise([sweep])
    assert keys == ["distill.name"]  # seed, cache_dir, local_dir differ too but are ignored; the rest follows
    assert len(runs.rows) == 8 * 3 and len(runs.failures) == 1
    kd = summary[summary.role == "student_kd"].set_index("distill.name")
    assert list(summary["distill.name"].unique()) == ["kl", "none", "soft"]
    assert kd.loc["kl", "n"] == 3 and kd.loc["kl", "seeds"] == (0, 1, 2)
    assert kd.loc["kl", "mae_mean"] == pytest.approx(0.72) and kd.loc["kl", "mae_std"] == pytest.approx(0.02)
    assert kd.loc["soft", "mae_mean"] == pytest.approx(0.765) and kd.loc["soft", "mae_std"] == pytest.approx(
        0.03 / np.sqrt(2))
    assert kd.loc["none", "mae_std"] == pytest.approx(0.0) and kd.loc["soft", "params_mean"] == 9_000


def test_a_numeric_sweep_is_grouped_by_its_key_and_by_overrides_it(tmp_path):
    for job, (weight, dim) in enumerate([(0.1, 8), (0.5, 8), (0.9, 16)]):
        config = base_config(0, "kl", tmp_path / str(job))
        config["distill"]["terms"]["kl"]["weight"] = weight
        config["student"]["dim"] = dim
        write_run(tmp_path / str(job), config=config, mae={"student_kd": 0.7 + weight / 10})
    _, keys, _, summary = summarise([tmp_path])
    assert keys == ["student.dim", "distill.terms.kl.weight"]
    _, keys, _, summary = summarise([tmp_path], by=["student.dim"])
    kd = summary[summary.role == "student_kd"].set_index("student.dim")
    assert kd.loc["8", "n"] == 2 and kd.loc["8", "mae_mean"] == pytest.approx(0.73)
    with pytest.raises(RecdistillError, match="student.size"):
        summarise([tmp_path], by=["student.size"])


def test_distinguishing_keys_keep_names_and_missing_values():
    configs = {"a": {"distill.name": "none", "seed": 0}, "b": {"distill.name": "kl", "distill.terms.kl.weight": 0.1},
               "c": {"distill.name": "kl", "distill.terms.kl.weight": 0.9, "dataset.local_dir": "/x"}}
    assert distinguishing_keys(configs) == ["distill.name", "distill.terms.kl.weight"]


def test_where_a_run_reports_never_distinguishes_runs():
    # A run tracked with MLflow and the same run untracked (or from before the logger group) are repetitions.
    configs = {"a": {"distill.name": "kl", "logger.name": "mlflow", "logger.tracking_uri": "http://x"},
               "b": {"distill.name": "kl", "logger.name": "none"}, "c": {"distill.name": "kl"},
               "d": {"distill.name": "none"}}
    assert distinguishing_keys(configs) == ["distill.name"]


def test_paired_tests_agree_with_scipy():
    candidate = np.array([0.71, 0.65, 0.80, 0.77, 0.69, 0.74, 0.62])
    baseline = np.array([0.75, 0.70, 0.79, 0.81, 0.73, 0.74, 0.70])
    result = paired_tests(candidate, baseline)
    assert result["pairs"] == 7 and result["diff"] == pytest.approx((candidate - baseline).mean())
    assert result["p_ttest"] == pytest.approx(stats.ttest_rel(candidate, baseline).pvalue)
    assert result["p_wilcoxon"] == pytest.approx(stats.wilcoxon(candidate, baseline, zero_method="wilcox").pvalue)
    same = paired_tests(baseline, baseline.copy())
    assert same["p_ttest"] == 1.0 and same["p_wilcoxon"] == 1.0 and same["diff"] == 0.0
    assert np.isnan(paired_tests(np.array([1.0]), np.array([2.0]))["p_ttest"])


def per_user_means(role, maes, seeds):
    """Per-user test MAE of a role averaged over seeds (one MAE per seed): shape (N_USERS,)."""
    return np.array([np.mean([user_mae(role, mae, seed, u) for seed, mae in zip(seeds, maes)])
                     for u in range(N_USERS)])


def test_distilled_students_are_paired_with_the_student_of_the_same_runs(sweep):
    runs, keys, rows, summary = summarise([sweep])
    tests = significance(summary, rows, keys, ["mae"], None, runs.configs)
    kl = tests[(summary.role == "student_kd") & (summary["distill.name"] == "kl")].iloc[0]
    candidate = per_user_means("student_kd", [0.70, 0.72, 0.74], [0, 1, 2])
    baseline = per_user_means("student", [0.80] * 3, [0, 1, 2])
    # one pair per user, the 3 seeds averaged first (it was 21 (seed, user) pairs, counting each user 3 times)
    assert kl["baseline"] == "student (same runs)" and kl["mae_pairs"] == N_USERS
    assert kl["mae_diff"] == pytest.approx((candidate - baseline).mean())
    assert kl["mae_p_ttest"] == pytest.approx(stats.ttest_rel(candidate, baseline).pvalue)
    assert kl["mae_p_wilcoxon"] == pytest.approx(stats.wilcoxon(candidate, baseline).pvalue)
    assert tests[summary.role == "teacher"]["mae_pairs"].isna().all()
    assert kl["mae_ci_low"] < kl["mae_diff"] < kl["mae_ci_high"]
    tested = tests["mae_p_wilcoxon"].notna()  # the family: the 3 student_kd rows of this table
    assert tested.sum() == 3 and tests.loc[tested, "mae_p_holm"].to_numpy() == pytest.approx(
        holm(tests.loc[tested, "mae_p_wilcoxon"].to_numpy()))


def test_a_baseline_value_is_averaged_over_its_seeds_then_joined_on_user(sweep):
    runs, keys, rows, summary = summarise([sweep])
    tests = significance(summary, rows, keys, ["mae"], "distill.name=none", runs.configs)
    soft = tests[(summary.role == "student_kd") & (summary["distill.name"] == "soft")].iloc[0]
    candidate = per_user_means("student_kd", [0.75, 0.78], [0, 1])
    baseline = per_user_means("student_kd", [0.80] * 3, [0, 1, 2])  # all of none's seeds, not only 0 and 1
    assert soft["baseline"] == "distill.name=none" and soft["mae_pairs"] == N_USERS  # was 14 (seed, user) pairs
    assert soft["mae_diff"] == pytest.approx((candidate - baseline).mean())
    assert soft["mae_p_ttest"] == pytest.approx(stats.ttest_rel(candidate, baseline).pvalue)
    assert tests[summary["distill.name"] == "none"]["baseline"].eq("(baseline)").all()
    # the one cached teacher (teacher_key teacher-0 in every run) is not compared with itself, nor counted by Holm
    teacher = tests[(summary.role == "teacher") & (summary["distill.name"] == "kl")].iloc[0]
    assert teacher["baseline"] == "(same models)" and np.isnan(teacher["mae_p_wilcoxon"])
    # kl's student alone is none's (seeds 0-2, same keys); soft's has seeds 0-1 only, so it is a comparison
    student = tests[(summary.role == "student") & (summary["distill.name"] == "kl")].iloc[0]
    assert student["baseline"] == "(same models)"
    family = tests["mae_p_wilcoxon"].notna()
    assert set(zip(summary.loc[family, "distill.name"], summary.loc[family, "role"])) == {
        ("kl", "student_kd"), ("soft", "student_kd"), ("soft", "student")}
    assert np.allclose(tests.loc[family, "mae_p_holm"], holm(tests.loc[family, "mae_p_wilcoxon"].to_numpy()))
    with pytest.raises(RecdistillError, match="values found"):
        significance(summary, rows, keys, ["mae"], "distill.name=hard", runs.configs)
    with pytest.raises(RecdistillError, match="KEY=VALUE"):
        significance(summary, rows, keys, ["mae"], "distill.name", runs.configs)
    with pytest.raises(RecdistillError, match=r"'distill' is not in any run's config; keys whose value differs "
                                              r"between these runs: \['distill.name'"):
        significance(summary, rows, keys, ["mae"], "distill=none", runs.configs)


def test_teachers_of_different_seeds_are_tested_against_the_baseline_seeds(tmp_path):
    for seed in (0, 1):
        config = base_config(seed, "kl", tmp_path / str(seed)) | {"teacher_seed": seed}
        write_run(tmp_path / str(seed), seed=seed, config=config)
    runs, keys, rows, summary = summarise([tmp_path], by=["seed"])
    tests = significance(summary, rows, keys, ["mae"], "seed=0", runs.configs)
    teacher = tests[(summary.role == "teacher") & (summary["seed"] == "1")].iloc[0]
    assert teacher["baseline"] == "seed=0" and teacher["mae_pairs"] == N_USERS


@pytest.mark.parametrize("damage, message", [
    (lambda t: t.drop(columns=["user"]), r"lacks the column\(s\) \['user'\]"),
    (lambda t: t.drop(columns=["role"]), r"lacks the column\(s\) \['role'\]"),
    (lambda t: t.assign(mae=t["mae"].astype(str)), r"column\(s\) \['mae'\] are not numeric"),
    (None, "is not a readable per-user parquet file"),
])
def test_a_damaged_per_user_file_is_a_clean_error_naming_it(sweep, damage, message):
    path = sweep / "4" / "per_user.parquet"
    if damage is None:
        path.write_bytes(b"not parquet at all")
    else:
        damage(pd.read_parquet(path)).to_parquet(path, index=False)
    with pytest.raises(RecdistillError, match=message) as raised:
        compare_main([str(sweep), "--format", "json", "--metric", "mae"])
    assert str(path) in str(raised.value)


def test_metric_names_are_matched_without_regard_to_case(sweep, capsys):
    compare_main([str(sweep), "--format", "json", "--metric", "MAE"])
    assert json.loads(capsys.readouterr().out)["metrics"] == ["mae"]


def test_runs_without_the_student_alone_say_so_in_the_note(sweep, capsys):
    for job in (3, 4):  # soft's runs, their student-alone rows cut
        path = sweep / str(job) / "per_user.parquet"
        table = pd.read_parquet(path)
        table[table.role != "student"].to_parquet(path, index=False)
    compare_main([str(sweep), "--format", "json", "--metric", "mae"])
    (note,) = json.loads(capsys.readouterr().out)["notes"]
    assert note.startswith("0 pairs for distill.name=soft, role=student_kd on mae: its runs have no per-user rows of "
                           "the student trained alone")


def write_per_user(folder, maes):
    """Replace a run's per_user.parquet by {role: {user: mae}} (users may differ between seeds and roles)."""
    rows = [{"role": role, "user": user, "n": 2, "mae": mae}
            for role, users in maes.items() for user, mae in users.items()]
    pd.DataFrame(rows).to_parquet(folder / "per_user.parquet", index=False)


def test_seeds_are_averaged_per_user_before_pairing_with_the_student_alone(tmp_path):
    # seed 1 evaluated users 0 and 1 only: concatenating seeds gives 6 pairs, mean difference 0.4 / 6,
    # while averaging each user over its seeds first gives 4 pairs (users), mean difference 0.05 / 4
    for seed, kd, alone in [(0, [0.5, 0.6, 0.7, 0.8], [0.6, 0.6, 0.9, 0.9]), (1, [0.9, 0.9], [0.5, 0.5])]:
        folder = write_run(tmp_path / str(seed), seed=seed)
        write_per_user(folder, {"student_kd": dict(enumerate(kd)), "student": dict(enumerate(alone))})
    runs, keys, rows, summary = summarise([tmp_path])
    kd = significance(summary, rows, keys, ["mae"], None, runs.configs)[summary.role == "student_kd"].iloc[0]
    candidate, baseline = np.array([0.7, 0.75, 0.7, 0.8]), np.array([0.55, 0.55, 0.9, 0.9])  # users 0-3
    assert kd["mae_pairs"] == 4 and kd["mae_diff"] == pytest.approx(0.0125)
    assert kd["mae_p_ttest"] == pytest.approx(stats.ttest_rel(candidate, baseline).pvalue)
    assert kd["mae_p_wilcoxon"] == pytest.approx(stats.wilcoxon(candidate, baseline).pvalue)
    assert kd["mae_p_holm"] == kd["mae_p_wilcoxon"]  # a family of one test


def test_a_baseline_side_is_averaged_over_its_seeds_before_the_join_on_user(tmp_path):
    # the group has users 0-3, the baseline users 1-4 (seed 1 only some of them): averaged sides share users 1-3,
    # where a join on (seed, user) would give 4 pairs (seed 0: users 1-3, seed 1: user 1)
    sides = {"kl": [{0: 0.5, 1: 0.6, 2: 0.7, 3: 0.8}, {0: 0.9, 1: 0.8}],
             "none": [{1: 0.7, 2: 0.9, 3: 0.9, 4: 0.1}, {1: 0.3}]}
    for distill, seeds in sides.items():
        for seed, maes in enumerate(seeds):
            write_per_user(write_run(tmp_path / f"{distill}{seed}", seed=seed, distill=distill), {"student_kd": maes})
    runs, keys, rows, summary = summarise([tmp_path])
    tests = significance(summary, rows, keys, ["mae"], "distill.name=none", runs.configs)
    kl = tests[(summary.role == "student_kd") & (summary["distill.name"] == "kl")].iloc[0]
    candidate, baseline = np.array([0.7, 0.7, 0.8]), np.array([0.5, 0.9, 0.9])  # users 1, 2, 3
    assert kl["mae_pairs"] == 3 and kl["mae_diff"] == pytest.approx((candidate - baseline).mean())
    assert kl["mae_p_ttest"] == pytest.approx(stats.ttest_rel(candidate, baseline).pvalue)


def test_teacher_seeds_count_distinct_teachers_next_to_the_runs(tmp_path, capsys):
    for seed in (0, 1, 2):
        write_run(tmp_path / "one_teacher" / str(seed), seed=seed)  # teacher_seed 0 in every run
        config = base_config(seed, "soft", tmp_path)
        config["teacher_seed"] = seed  # a teacher retrained per seed
        write_run(tmp_path / "three_teachers" / str(seed), seed=seed, distill="soft", config=config)
    document = json.loads(compare_main([str(tmp_path), "--format", "json"]) or capsys.readouterr().out)
    counts = {(g["distill.name"], g["role"]): (g["n"], g["teacher_seeds"]) for g in document["groups"]}
    assert counts == {("kl", r): (3, 1) for r in ("teacher", "student", "student_kd")} | {
        ("soft", r): (3, 3) for r in ("teacher", "student", "student_kd")}


def test_csv_output_is_the_aggregated_table(sweep, capsys):
    compare_main([str(sweep), "--format", "csv", "--metric", "mae", "--metric", "accuracy"])
    out = capsys.readouterr()
    table = pd.read_csv(io.StringIO(out.out))
    kl = table[(table["distill.name"] == "kl") & (table.role == "student_kd")].iloc[0]
    assert kl["mae_mean"] == pytest.approx(0.72) and kl["accuracy_mean"] == pytest.approx(0.28)
    assert kl["n"] == 3 and kl["teacher_seeds"] == 1 and kl["seeds"] == "0;1;2"
    assert kl["baseline"] == "student (same runs)" and set(table["split"]) == {"test"}
    assert list(table.columns[table.columns.get_loc("n"):][:2]) == ["n", "teacher_seeds"]
    assert {"mae_p_ttest", "mae_p_wilcoxon", "mae_p_holm", "mae_ci_low", "mae_ci_high", "mae_diff",
            "latency_ms_median_mean"} <= set(table.columns)
    assert kl["mae_ci_low"] < kl["mae_diff"] < kl["mae_ci_high"]
    assert "failed job" in out.err and "ConfigError" in out.err and "[" not in out.out.splitlines()[0]


def test_markdown_output_bolds_the_best_mean(sweep, capsys):
    compare_main([str(sweep), "--format", "markdown", "--split", "valid"])
    caption, blank, *lines = capsys.readouterr().out.splitlines()
    assert caption.startswith("valid metrics, mean ± std over the n runs (student seeds); paired tests on per-user "
                              "test metrics") and blank == ""
    # p Holm's family: the 3 student_kd rows, each tested against the student alone
    assert lines[0].startswith("| distill.name | role | accuracy | mae | rmse | params | latency ms | n "
                               "| teacher seeds | baseline | pairs (users) accuracy | Δ accuracy | 95% CI accuracy "
                               "| p t-test accuracy | p Wilcoxon accuracy | p Holm accuracy (family of 3) |")
    assert lines[1].startswith("| --- |")
    teacher = next(line for line in lines if "| teacher |" in line)
    assert "**0.6100 ± 0.0000**" in teacher  # valid MAE of the teacher (test + 0.01), best of all groups
    assert len(lines) == 2 + 9


def test_a_row_with_a_baseline_but_no_pairs_says_why(sweep, capsys):
    for job in (3, 4):  # soft's two runs, their per-user file cut down to accuracy
        path = sweep / str(job) / "per_user.parquet"
        pd.read_parquet(path).drop(columns=["mae", "rmse"]).to_parquet(path, index=False)
    compare_main([str(sweep), "--format", "json", "--metric", "mae"])
    document = json.loads(capsys.readouterr().out)
    soft = next(g for g in document["groups"] if g["distill.name"] == "soft" and g["role"] == "student_kd")
    assert soft["mae_pairs"] == 0
    assert document["notes"] == [f"0 pairs for distill.name=soft, role=student_kd on mae: none of its 2 run(s) has "
                                 f"per-user mae values (per_user.parquet missing or without the column), "
                                 f"e.g. {sweep / '3'}"]
    compare_main([str(sweep), "--format", "json", "--metric", "accuracy"])
    assert json.loads(capsys.readouterr().out)["notes"] == []


def test_json_output_lists_groups_and_failures(sweep, capsys):
    compare_main([str(sweep), "--format", "json", "--baseline", "distill.name=none"])
    document = json.loads(capsys.readouterr().out)
    assert document["group_keys"] == ["distill.name"] and document["baseline"] == "distill.name=none"
    assert "pairs = users" in document["paired_tests"] and "Holm" in document["paired_tests"]
    assert len(document["groups"]) == 9 and document["failed"][0]["error"] == "ConfigError"
    kl = next(g for g in document["groups"] if g["distill.name"] == "kl" and g["role"] == "student_kd")
    assert kl["mae_mean"] == pytest.approx(0.72) and len(kl["runs"]) == 3 and kl["mae_pairs"] == N_USERS
    assert kl["n"] == 3 and kl["teacher_seeds"] == 1
    # the student alone of kl is none's very models (seeds 0-2): not tested; soft's has seeds 0-1 only, so its
    # per-user means differ from none's means over 0-2 (seed-paired, they did not)
    kl_student = next(g for g in document["groups"] if g["distill.name"] == "kl" and g["role"] == "student")
    assert kl_student["baseline"] == "(same models)" and kl_student["mae_pairs"] is None
    soft_student = next(g for g in document["groups"] if g["distill.name"] == "soft" and g["role"] == "student")
    assert soft_student["baseline"] == "distill.name=none" and soft_student["mae_pairs"] == N_USERS


def test_table_output_names_groups_roles_and_tests(sweep, capsys):
    compare_main([str(sweep)])
    out = capsys.readouterr().out
    for text in ("distill.name", "student_kd", "kl", "soft", "0.7200 ± 0.0200", "paired tests", "p Wilcoxon",
                 "p Holm", "95% CI", "pairs (users)", "teacher seeds", "Holm 1979"):
        assert text in out


def test_the_plot_is_a_png_with_a_sweep_panel(tmp_path, capsys):
    for job, weight in enumerate([0.1, 0.5, 0.9]):
        for seed in (0, 1):
            config = base_config(seed, "kl", tmp_path)
            config["distill"]["terms"]["kl"]["weight"] = weight
            write_run(tmp_path / "runs" / f"{job}_{seed}", seed=seed, config=config,
                      mae={"student_kd": 0.75 - weight / 10 + seed / 100})
    write_run(tmp_path / "runs" / "none", distill="none")
    two_panels, three_panels = tmp_path / "frontier.png", tmp_path / "plots" / "sweep.png"
    compare_main([str(tmp_path / "runs" / "0_0"), str(tmp_path / "runs" / "none"), "--plot", str(two_panels)])
    compare_main([str(tmp_path / "runs"), "--metric", "mae", "--plot", str(three_panels), "--format", "csv"])
    assert "wrote" in capsys.readouterr().err
    import matplotlib.image

    for path in (two_panels, three_panels):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(three_panels).shape[1] > 1.4 * matplotlib.image.imread(two_panels).shape[1]
    assert not list((tmp_path / "plots").glob(".*tmp"))
    mask = os.umask(0o022)
    os.umask(mask)
    assert all(path.stat().st_mode & 0o777 == 0o666 & ~mask for path in (two_panels, three_panels))


def test_user_mistakes_are_clean_errors(sweep, tmp_path):
    with pytest.raises(RecdistillError, match="unknown metric"):
        compare_main([str(sweep), "--metric", "ndcg"])
    with pytest.raises(RecdistillError, match=".png"):
        compare_main([str(sweep), "--plot", str(tmp_path / "figure.pdf")])
    with pytest.raises(RecdistillError, match="does not exist"):
        compare_main([str(tmp_path / "nowhere")])
    with pytest.raises(RecdistillError, match="could not write /proc/figure.png"):
        compare_main([str(sweep), "--plot", "/proc/figure.png"])
    (tmp_path / "unreadable" / "0").mkdir(parents=True)
    (tmp_path / "unreadable" / "0" / "metrics.json").write_text("{not json")
    with pytest.raises(RecdistillError, match=r"no readable metrics.json .*unreadable/0/metrics.json: JSONDecodeError"):
        compare_main([str(tmp_path / "unreadable")])
    write_failure(tmp_path / "only_failures" / "0")
    with pytest.raises(RecdistillError, match="no metrics.json.*1 failed job"):
        compare_main([str(tmp_path / "only_failures")])


def test_directions_headlines_and_pairing_come_from_the_metric_catalogue():
    assert [higher_is_better(c) for c in ("accuracy", "mae", "rmse", "ndcg@10", "coverage@5")] == [
        True, False, False, True, True]
    assert [higher_is_better(c) for c in ("params", "size_bytes", "latency_ms_median", "latency_ms_p90",
                                          "throughput_per_s")] == [False, False, False, False, True]
    with pytest.raises(ConfigError, match="unknown metric 'ndgc@10' \\(result column\\); valid: accuracy"):
        higher_is_better("ndgc@10")
    assert headline_metrics({"hr@5": 0.1, "ndcg@10": 0.2, "hr@10": 0.3, "coverage@10": 0.4}) == ["ndcg@10", "hr@10"]
    assert headline_metrics(["params", "rmse", "mae", "accuracy"]) == ["accuracy", "mae", "rmse"]
    assert headline_metrics(["hr@5", "ndcg@5", "recall@5", "precision@5", "mrr@5", "params"]) == [
        "hr@5", "ndcg@5", "recall@5", "precision@5"]  # no headline cut-off: the first four columns
    assert DEFAULT_METRICS == "accuracy, mae, rmse for rating; ndcg@10, hr@10, recall@10, mrr@10 for ranking"
    assert [is_per_user(c) for c in ("mae", "map@20", "coverage@10", "params", "unknown")] == [
        True, True, False, False, False]


def test_a_run_repeating_another_runs_config_and_seed_counts_once(tmp_path, caplog):
    from recdistill.reporting.runs import load_runs

    for name, seed in (("a", 0), ("b", 1), ("c", 0)):  # c repeats a: same config, same seed
        write_run(tmp_path / name, seed=seed, config=base_config(seed, "kl", tmp_path / "same"))
    runs = load_runs([tmp_path])
    assert sorted(runs.configs) == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert sorted(runs.rows.loc[runs.rows["role"] == "student_kd", "seed"]) == [0, 1]
    assert "repeat the config and seed of another run" in caplog.text and str(tmp_path / "c") in caplog.text


def _keep_results(monkeypatch, *args):
    """Run scripts/keep_results.py's main with `args` as its command line."""
    import importlib.util
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "keep_results.py"
    spec = importlib.util.spec_from_file_location("keep_results", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["keep_results.py", *map(str, args)])
    module.main()


def test_kept_results_compare_like_the_run_folders(sweep, tmp_path, monkeypatch, capsys):
    def groups(path):
        compare_main([str(path), "--format", "json", "--baseline", "distill.name=none", "--metric", "mae"])
        document = json.loads(capsys.readouterr().out)
        return [{k: v for k, v in g.items() if k != "runs"} for g in document["groups"]]

    _keep_results(monkeypatch, sweep, "--into", tmp_path / "kept", "--metric", "mae")
    capsys.readouterr()
    kept = tmp_path / "kept" / sweep.name
    assert sorted(p.name for p in (kept / "0").iterdir()) == ["metrics.json", "per_user.parquet"]
    assert list(pd.read_parquet(kept / "0" / "per_user.parquet").columns) == ["role", "user", "mae"]
    assert groups(kept) == groups(sweep)
    compare_main([str(kept), "--format", "markdown", "--baseline", "distill.name=none", "--metric", "mae",
                  "--metric", "rmse"])
    markdown = capsys.readouterr().out
    assert "Δ mae" in markdown and "Δ rmse" not in markdown  # rmse was cut: named, not shown as 0 pairs
    assert markdown.rstrip().endswith("not tested, no per-user values in these runs: rmse")
    compare_main([str(kept), "--format", "json", "--baseline", "distill.name=none", "--metric", "mae",
                  "--metric", "rmse"])
    document = json.loads(capsys.readouterr().out)
    assert document["notes"] == ["not tested, no per-user values in these runs: rmse"]
    assert all("rmse_pairs" not in g and "rmse_mean" in g for g in document["groups"])
    assert any(g["mae_pairs"] for g in document["groups"])
    with pytest.raises(SystemExit, match="ndcg@10"):
        _keep_results(monkeypatch, sweep, "--into", tmp_path / "other", "--metric", "ndcg@10")
    assert not (tmp_path / "other").exists()  # nothing half-kept
