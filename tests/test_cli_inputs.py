"""Malformed input to the command line: one line on stderr naming the file and line, or the
option (field) and its allowed range, and exit code 2 (1 for a dependency that may recover);
never a traceback, a hang, or a side effect.

The table is the malformed-input list of issue 14 plus its neighbours (the class, not only
the example); the property tests throw random bytes and random documents at the same doors.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.cli import main
from autoscaler.cli.common import MAX_MESSAGE_CHARS, Range
from autoscaler.errors import SpecError
from tests.support.ports import free_port

EXAMPLES = Path(__file__).resolve().parents[1] / "deploy" / "examples"
GOOD = "policy: predictive\nmaxReplicas: 4\ncapacity: {requestsPerSecond: 4, concurrency: 20}\n"
BOMB = "".join(f"{a}: &{a} [{', '.join([f'*{p}'] * 9)}]\n"
               for p, a in zip("abcdefg", "bcdefgh", strict=True))
"""Seven levels of nine aliases over a nine-item list: 9^8 = 43 million leaves."""


def _kubeconfig(current: str = "ctx", context_cluster: str = "c1") -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c1", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u1", "user": {"token": "x"}}],
        "contexts": [{"name": "ctx", "context": {"cluster": context_cluster, "user": "u1"}}],
        "current-context": current}, sort_keys=False)


def _counts_day(path: Path) -> Path:
    """One day of per-second counts (the NASA file's format), about 1 request/s."""
    counts = np.random.default_rng(0).poisson(1.0, 86_400)
    path.write_text(" ".join(map(str, counts)))
    return path


Make = Callable[[Path], list[str]]


def _file(name: str, content: str | bytes) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return str(path)
    return make


def _with(file: Callable[[Path], str], argv: Callable[[str], list[str]]) -> Make:
    return lambda tmp: argv(file(tmp))


TUNE = ["tune", "--synthetic-duration", "2400", "--engine", "fluid", "--budget", "1",
        "--policy", "hpa", "--no-progress"]
BINARY = bytes(range(256)) * 4

# (argv builder, exit code, fragments the one line must hold; "{f}" is the file made)
CASES = [
    # --- spec files: validate and replay --spec read them the same way ---
    pytest.param(_with(_file("b.yaml", BINARY), lambda f: ["validate", f]), 2,
                 ["{f}:2: (file): not UTF-8 text"], id="validate a binary file"),
    pytest.param(_with(_file("b.yaml", BINARY), lambda f: ["replay", "--spec", f]), 2,
                 ["{f}:2: (file): not UTF-8"], id="replay --spec a binary file"),
    pytest.param(_with(_file("b.yaml", BINARY), lambda f: ["replay", "--profile", f]), 2,
                 ["{f}:2: --profile: not UTF-8 text"], id="replay --profile a binary file"),
    pytest.param(_with(_file("l.yaml", "policy: hpa\n# caf\xe9\n".encode("latin-1")),
                       lambda f: ["validate", f]), 2, ["{f}:2:", "not UTF-8"],
                 id="a Latin-1 file names its line"),
    pytest.param(_with(_file("d.yaml", GOOD + "maxReplicas: 8\n"), lambda f: ["validate", f]),
                 2, ["{f}:4:", "duplicate key 'maxReplicas'", "line 2"],
                 id="a duplicate key names both lines"),
    pytest.param(_with(_file("t.yaml", GOOD.replace("4\n", "true\n", 1)),
                       lambda f: ["validate", f]), 2,
                 ["{f}:2: maxReplicas: True", "a whole number >= 1 and <= 100000",
                  "true/false"], id="true for an integer field"),
    pytest.param(_with(_file("s.yaml", GOOD.replace("4\n", '"4"\n', 1)),
                       lambda f: ["validate", f]), 2,
                 ["{f}:2: maxReplicas: '4'", "not a string"], id="a quoted number"),
    pytest.param(_with(_file("m.yaml", GOOD + "---\n" + GOOD), lambda f: ["validate", f]), 2,
                 ["{f}:4: (yaml): a second YAML document"], id="two documents"),
    pytest.param(_with(_file("r.yaml", "policy: predictive\nminReplicas: 1\n"),
                       lambda f: ["validate", f]), 2,
                 ["{f}:1: maxReplicas: required, but missing"], id="a missing field is named"),
    pytest.param(_with(_file("e.yaml", "policy: predictive\nmaxReplicas: -1\nminReplicas: -2\n"
                              "capacity: {requestsPerSecond: 0, concurrency: 20}\n"
                              "syncPeriodSeconds: 0\n"), lambda f: ["validate", f]), 2,
                 ["{f}:2: maxReplicas: -1", "line 3 minReplicas: -2",
                  "line 4 capacity.requestsPerSecond: 0 (a number > 0)",
                  "line 5 syncPeriodSeconds: 0 (a number >= 1 and <= 3600)"],
                 id="every error at once, in line order, each with its range"),
    pytest.param(_with(_file("h.yaml", "apiVersion: autoscaling/v2\n"
                              "kind: HorizontalPodAutoscaler\nspec: {maxReplicas: 4}\n"),
                       lambda f: ["validate", f]), 2,
                 ["{f}:2: kind: got a HorizontalPodAutoscaler (autoscaling/v2); expected",
                  "InferenceAutoscaler"], id="a stock HPA says what it got"),
    pytest.param(_with(_file("k.yaml", "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\n"
                              "spec: {triggers: []}\n"), lambda f: ["validate", f]), 2,
                 ["{f}:2: kind: got a ScaledObject (keda.sh/v1alpha1); expected"],
                 id="a KEDA ScaledObject says what it got"),
    pytest.param(_with(_file("n.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n"),
                       lambda f: ["validate", f]), 2, ["{f}: (yaml): nested too deeply"],
                 id="deep nesting"),
    pytest.param(_with(_file("bomb.yaml", "a: &a [x, x, x, x, x, x, x, x, x]\n" + BOMB + GOOD),
                       lambda f: ["validate", f]), 2, ["{f}: (yaml): anchors and aliases"],
                 id="an alias bomb"),
    pytest.param(_with(_file("z.yaml", ""), lambda f: ["validate", f]), 2,
                 ["{f}: (document): got an empty document"], id="an empty file"),
    pytest.param(lambda tmp: ["validate", str(tmp)], 2, ["cannot read it"],
                 id="a folder"),
    pytest.param(_with(_file("w.yaml", GOOD + "slo: {ttftSeconds: .nan}\n"),
                       lambda f: ["validate", f]), 2,
                 ["{f}:4: slo.ttftSeconds: nan", "a number > 0 and <= 3600"], id="NaN"),
    # --- controller: the kubeconfig is checked before any client is built ---
    pytest.param(lambda tmp: ["controller", "--kubeconfig", str(tmp / "nope")], 2,
                 ["{tmp}/nope: --kubeconfig: cannot read the kubeconfig"],
                 id="a missing kubeconfig"),
    pytest.param(_with(_file("kc", b"\x00\x01 {{{"), lambda f: ["controller", "--kubeconfig",
                                                                 f]), 2,
                 ["{f}", "not valid YAML"], id="a garbage kubeconfig"),
    pytest.param(_with(_file("kc", _kubeconfig(current="nope")),
                       lambda f: ["controller", "--kubeconfig", f]), 2,
                 ["{f}:", "current-context: 'nope' names no entry of contexts (known: ctx)"],
                 id="a kubeconfig naming a missing context"),
    pytest.param(_with(_file("kc", _kubeconfig(context_cluster="c9")),
                       lambda f: ["controller", "--kubeconfig", f]), 2,
                 ["{f}:", "names cluster 'c9', which is not in clusters"],
                 id="a kubeconfig naming a missing cluster"),
    pytest.param(_with(_file("kc", "hello: world\n"), lambda f: ["controller", "--kubeconfig",
                                                                  f]), 2,
                 ["{f}:", "current-context: missing"], id="YAML that is not a kubeconfig"),
    # --- tune ---
    pytest.param(_with(_file("j.log", BINARY), lambda f: [*TUNE, "--storage", f]), 2,
                 ["{f}:1: --storage: not an optuna journal record"],
                 id="tune --storage a binary file"),
    pytest.param(_with(_file("j.log", '{"op_code": 0}\nhello\n'),
                       lambda f: [*TUNE, "--storage", f]), 2,
                 ["{f}:2: --storage: not an optuna journal record"],
                 id="tune --storage a text file"),
    pytest.param(lambda tmp: [*TUNE, "--emit-spec", str(tmp / "no" / "x.yaml")], 2,
                 ["--emit-spec {tmp}/no/x.yaml: cannot write: folder {tmp}/no does not exist"],
                 id="tune --emit-spec into a missing folder"),
    pytest.param(lambda tmp: [*TUNE, "--budget", "1e12"], 2,
                 ["--budget: '1e12'", "a whole number >= 1 and <= 100000"],
                 id="tune --budget 1e12"),
    pytest.param(lambda tmp: [*TUNE, "--workers", "1000000"], 2,
                 ["--workers: '1000000'", "<= 1024"], id="tune --workers 1e6"),
    # --- replay ---
    pytest.param(lambda tmp: ["replay", "--time-scale", "1e6"], 2,
                 ["--time-scale: '1e6' is not allowed", ">= 0.001 and <= 1000"],
                 id="replay --time-scale 1e6"),
    pytest.param(_with(lambda tmp: str(_counts_day(tmp / "c.txt")),
                       lambda f: ["replay", "--trace", f, "--time-scale", "1000"]), 2,
                 ["--time-scale: 1000.0 is not allowed", "400 days, after scaling"],
                 id="a stretched trace longer than a year"),
    pytest.param(lambda tmp: ["replay", "--rate-scale", "1e6"], 2,
                 ["--rate-scale: '1e6'", "<= 1000"], id="replay --rate-scale 1e6"),
    pytest.param(lambda tmp: ["replay", "--seed", "-1"], 2, ["--seed: '-1'"],
                 id="a negative seed"),
    pytest.param(_with(_file("p.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                              "2023-11-16 18:15:46.6805900,1000000000000,44\n"
                              "2023-11-16 18:15:50.9951690,100,109\n"
                              "2023-11-16 18:25:50.9951690,100,109\n"),
                       lambda f: ["replay", "--trace", f, "--policies", "hpa"]), 2,
                 ["error: trace ", "misses the TTFT SLO of 2 s", "up to 1e+12",
                  "check the trace's token columns"],
                 id="a prompt of 10^12 tokens blames the trace, not the SLO"),
    pytest.param(_with(_file("c.txt", "1 2 3 1000000000000 2 3 " * 200),
                       lambda f: ["replay", "--trace", f, "--trace-format", "counts",
                                  "--policies", "hpa"]), 2,
                 ["error: trace ", "needs", "replicas", "at most 100,000"],
                 id="10^12 requests in a second blame the trace, not maxReplicas"),
    pytest.param(lambda tmp: ["replay", "--json", str(tmp / "no" / "r.json")], 2,
                 ["--json {tmp}/no/r.json: cannot write: folder {tmp}/no does not exist"],
                 id="an unwritable --json fails before the run"),
    pytest.param(lambda tmp: ["replay", "--decisions-window", "5m:2m"], 2,
                 ["--decisions-window: '5m:2m'", "START < END"], id="an empty decision window"),
    pytest.param(lambda tmp: ["replay", "--policies", "hpa", "--decisions-policies", "kpa"],
                 2, ["--decisions-policies: 'kpa'", "from hpa"],
                 id="logging a policy that is not replayed"),
    # --- metrics: what promtool would reject ---
    pytest.param(lambda tmp: ["metrics", "rules", "--window", "banana"], 2,
                 ["--window: 'banana'", "a Prometheus duration"], id="rules --window banana"),
    pytest.param(lambda tmp: ["metrics", "rules", "--selector", 'foo="bar'], 2,
                 ["--selector: 'foo=\"bar'", "a closed, quoted string at character 5"],
                 id="rules --selector with an open quote"),
    pytest.param(lambda tmp: ["metrics", "rules", "--interval", "15"], 2,
                 ["--interval: '15'"], id="rules --interval without a unit"),
    pytest.param(lambda tmp: ["metrics", "rules", "--workload-label", "app-name"], 2,
                 ["--workload-label: 'app-name'", "a label name"], id="a bad label name"),
    pytest.param(lambda tmp: ["metrics", "show", "--prometheus", "not a url", "--target",
                              "a/b"], 2, ["--prometheus: 'not a url'"], id="not a URL"),
    pytest.param(lambda tmp: ["metrics", "rules", "--preset", "nope"], 2,
                 ["--preset: 'nope'", "vllm"], id="an unknown preset names the option"),
    pytest.param(lambda tmp: ["metrics", "show", "--prometheus", "http://127.0.0.1:9",
                              "--target", "noslash"], 2, ["--target: 'noslash'",
                                                          "NAMESPACE/NAME"],
                 id="a target without a namespace names the option"),
    pytest.param(_with(_file("tok", BINARY), lambda f: [
        "metrics", "show", "--prometheus", "http://127.0.0.1:9", "--target", "a/b",
        "--bearer-token-file", f]), 2, ["{f}: --bearer-token-file: not UTF-8 text"],
        id="a binary bearer-token file"),
    pytest.param(_with(_file("pw", BINARY), lambda f: [
        "metrics", "show", "--prometheus", "http://127.0.0.1:9", "--target", "a/b",
        "--basic-auth-user", "u", "--basic-auth-password-file", f]), 2,
        ["{f}: --basic-auth-password-file: not UTF-8 text"], id="a binary password file"),
    # --- forecast and twin ---
    pytest.param(lambda tmp: ["forecast", "backtest", "--trace", "x", "--resolution", "1e30"],
                 2, ["--resolution: '1e30'", "<= 86400"], id="a resolution of 1e30 s"),
    pytest.param(lambda tmp: ["twin", "--port", "70000"], 2,
                 ["--port: '70000'", "<= 65535"], id="twin --port 70000"),
]


@pytest.mark.parametrize(("make", "code", "fragments"), CASES)
def test_malformed_input_is_one_line_and_its_exit_code(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Make, code: int,
        fragments: list[str]) -> None:
    argv = make(tmp_path)
    file = next((a for a in argv if a.startswith(str(tmp_path))), "")
    try:
        got = main(argv)
    except SystemExit as exc:  # argparse
        got = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert got == code, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert len(err) <= MAX_MESSAGE_CHARS + 1
    for fragment in fragments:
        assert fragment.format(f=file, tmp=tmp_path) in err, err


def test_tune_emit_spec_creates_no_folder(tmp_path: Path) -> None:
    # --attainment 0.5: a winner exists, so the old code went on to write (and mkdir -p).
    assert main([*TUNE, "--attainment", "0.5", "--emit-spec",
                 str(tmp_path / "a" / "b" / "x.yaml")]) == 2
    assert list(tmp_path.iterdir()) == []


def test_no_kubeconfig_outside_a_pod_names_the_file_it_looked_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["controller"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{tmp_path}/.kube/config: ~/.kube/config (no --kubeconfig, not in a pod)" in err


def test_an_unreachable_prometheus_is_one_line_and_exit_code_one(
        capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["metrics", "show", "--prometheus", url, "--target", "llm/a",
                 "--timeout", "2"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.count("\n") == 1
    assert out.err.startswith("autoscaler metrics show: error: ") and url in out.err


def test_cold_start_zero_is_accepted_as_specs_allow(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "c.txt"
    trace.write_text(" ".join(["2"] * 600))  # 10 minutes at 2 requests/s
    assert main(["replay", "--trace", str(trace), "--trace-format", "counts", "--policies",
                 "hpa", "--cold-start", "0", "--json", "-", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["policy"] == "hpa"


# --- what promtool accepts ------------------------------------------------------------------

PROMTOOL = shutil.which("promtool")


def _promtool_accepts(tmp_path: Path, window: str, selector: str, interval: str = "15s") -> bool:
    """Render the recording rules with these strings *unchecked* and ask promtool."""
    from autoscaler.metrics.collect import CollectorConfig
    from autoscaler.metrics.presets import get_preset
    from autoscaler.metrics.rules import rule_group

    cfg = CollectorConfig(preset=get_preset("vllm"), selector=selector, window=window)
    group = rule_group(cfg.recording_rules(), name="t", interval=interval)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False, width=400))
    proc = subprocess.run([PROMTOOL or "promtool", "check", "rules", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode == 0


STRICTER = {("1m", 'a="b",'), ("2y", "")}
"""Legal PromQL that we refuse: simpler rules to state, and no real rate window is longer
than a year."""


def _we_accept(window: str, selector: str) -> bool:
    from autoscaler.config import label_matchers, prometheus_duration

    try:
        prometheus_duration("--window", window)
        label_matchers("--selector", selector)
    except SpecError:
        return False
    return True


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) not found")
@pytest.mark.parametrize(("window", "selector"), [
    pytest.param("1m", "", id="defaults"),
    pytest.param("1h30m", 'job="vllm"', id="compound duration"),
    pytest.param("500ms", 'job="vllm",model=~"llama.*"', id="milliseconds and a regex"),
    pytest.param("2w", "job!=\"a\", pod!~'b.+'", id="single quotes and spaces"),
    pytest.param("1y", 'a="x\\"y\\n"', id="escapes"),
    pytest.param("5m", "a=`raw\\string`", id="a raw string"),
    pytest.param("5m", 'a="\\u00e9\\x41\\101"', id="unicode, hex and octal escapes"),
    pytest.param("banana", "", id="not a duration"),
    pytest.param("1m30", "", id="a number without a unit"),
    pytest.param("30s1m", "", id="units out of order"),
    pytest.param("0s", "", id="zero"),
    pytest.param("1.5m", "", id="a fraction"),
    pytest.param("1m", 'foo="bar', id="an open quote"),
    pytest.param("1m", "foo=bar", id="an unquoted value"),
    pytest.param("1m", 'foo=="bar"', id="a doubled operator"),
    pytest.param("1m", '1foo="bar"', id="a name starting with a digit"),
    pytest.param("1m", 'a="b",', id="a trailing comma (legal, refused on purpose)"),
    pytest.param("2y", "", id="two years (legal, refused on purpose)"),
    pytest.param("1m", 'a="b" c="d"', id="a missing comma"),
    pytest.param("1m", 'a=~"("', id="a broken regex"),
    pytest.param("1m", 'a="\\q"', id="an unknown escape"),
    pytest.param("1m", 'a="x"} or vector(1) or {b="y"', id="an injection"),
])
def test_our_checks_agree_with_promtool(tmp_path: Path, window: str, selector: str) -> None:
    ours = _we_accept(window, selector)
    theirs = _promtool_accepts(tmp_path, window, selector)
    if (window, selector) in STRICTER:
        assert theirs and not ours
    else:
        assert ours == theirs


# --- properties -----------------------------------------------------------------------------

ONE_LINE = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
WHERE = re.compile(r"^autoscaler validate: error: (?P<file>[^:]+)(?::(?P<line>\d+))?: "
                   r"(?P<field>\S+): ")


def _check_one_line(code: int, err: str, path: Path) -> None:
    assert code in (0, 2), err
    if code == 0:
        assert err == ""
        return
    assert err.count("\n") == 1 and "Traceback" not in err
    assert len(err) <= MAX_MESSAGE_CHARS + 1
    m = WHERE.match(err)
    assert m is not None, err
    assert m["file"] == str(path)
    # Either a line of the file or a field with its allowed range (or both).
    assert m["line"] is not None or "allowed" in err or "expected" in err, err


@ONE_LINE
@given(data=st.binary(max_size=400))
def test_any_bytes_load_or_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        data: bytes) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(data)
    code = main(["validate", str(path)])
    _check_one_line(code, capsys.readouterr().err, path)


SPEC_KEYS = ["policy", "minReplicas", "maxReplicas", "metrics", "behavior", "slo", "capacity",
             "coldStartSeconds", "syncPeriodSeconds", "maxMetricAgeSeconds", "staticReplicas",
             "kpa", "predictive", "requestsPerSecond", "concurrency", "ttftSeconds", "scaleUp",
             "policies", "type", "value", "periodSeconds", "target", "metric", "kind",
             "apiVersion", "spec", "bogus"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**15, 10**15),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["hpa", "kpa", "predictive", "static", "oracle", "Pods",
                                     "Percent", "Value", "AverageValue", "concurrency",
                                     "HorizontalPodAutoscaler", "InferenceAutoscaler", ""]),
                    st.text(max_size=12))
DOCS = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(SPEC_KEYS), inner, max_size=6)), max_leaves=25)


@ONE_LINE
@given(doc=DOCS, base=st.booleans())
def test_any_yaml_document_loads_or_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: object, base: bool) -> None:
    if base and isinstance(doc, dict):  # near-valid specs reach the deeper checks
        doc = {**yaml.safe_load(GOOD), **doc}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    code = main(["validate", str(path)])
    _check_one_line(code, capsys.readouterr().err, path)


CR = yaml.safe_load((EXAMPLES / "vllm-autoscaler.yaml").read_text())
CR_PATHS = [("minReplicas",), ("maxReplicas",), ("mode",), ("fallback",),
            ("fallback", "replicas"), ("metricsSource",), ("metricsSource", "window"),
            ("metricsSource", "queries"), ("scaleTargetRef",), ("scaleTargetRef", "name"),
            ("slo", "ttftSeconds"), ("capacity",), ("behavior",), ("policy",), ("bogus",)]


@ONE_LINE
@given(edits=st.lists(st.tuples(st.sampled_from(CR_PATHS), DOCS), max_size=4))
def test_any_edited_custom_resource_loads_or_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        edits: list[tuple[tuple[str, ...], object]]) -> None:
    doc = json.loads(json.dumps(CR))
    for where, value in edits:
        node = doc["spec"]
        for key in where[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[where[-1]] = value
    path = tmp_path / "cr.yaml"
    path.write_text(yaml.safe_dump(doc))
    code = main(["validate", str(path)])
    _check_one_line(code, capsys.readouterr().err, path)


@ONE_LINE
@given(doc=st.one_of(DOCS, st.dictionaries(
    st.sampled_from(["clusters", "contexts", "users", "current-context", "kind"]), DOCS,
    max_size=5)))
def test_any_kubeconfig_is_accepted_or_one_bounded_error_naming_the_file(
        tmp_path: Path, doc: object) -> None:
    from autoscaler.cli.controller import check_kubeconfig

    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    try:
        check_kubeconfig(str(path), {})
    except SpecError as exc:
        text = str(exc)
        assert text.startswith(str(path)) and "\n" not in text
        assert len(text) <= MAX_MESSAGE_CHARS


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=12),
                     st.from_regex(r"-?[0-9]{1,4}(\.[0-9]+)?(e-?[0-9]{1,3})?", fullmatch=True)),
       low=st.integers(-5, 5), high=st.integers(6, 10_000), whole=st.booleans())
def test_a_number_option_parses_inside_its_range_or_names_the_range(
        text: str, low: int, high: int, whole: bool) -> None:
    rng = Range(low=low, high=high, whole=whole)
    try:
        value = rng.parse("--x", text)
    except SpecError as exc:
        assert exc.field == "--x" and exc.allowed == rng.describe()
        assert f"<= {high}" in str(exc)
        return
    assert low <= value <= high and (not whole or value == int(value))


MATCHER = st.tuples(st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True),
                    st.sampled_from(["=", "!=", "=~", "!~"]),
                    st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                                   blacklist_characters='"\\\n'), max_size=10))


@settings(max_examples=200, deadline=None)
@given(matchers=st.lists(MATCHER, min_size=1, max_size=4))
def test_well_formed_matchers_are_accepted_unless_a_regex_is_broken(
        matchers: list[tuple[str, str, str]]) -> None:
    from autoscaler.config import label_matchers

    text = ", ".join(f'{name}{op}"{value}"' for name, op, value in matchers)
    try:
        label_matchers("--selector", text)
    except SpecError as exc:
        assert any(op in ("=~", "!~") for _, op, _ in matchers), str(exc)
        assert "regular expression" in exc.allowed


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_any_selector_text_is_accepted_or_a_spec_error(text: str) -> None:
    from autoscaler.config import label_matchers

    try:
        label_matchers("--selector", text)
    except SpecError as exc:
        assert exc.field == "--selector"


REPLAY_FLAGS = ["--policies", "--slo-ttft", "--cold-start", "--seed", "--min-replicas",
                "--max-replicas", "--rate-scale", "--time-scale", "--engine",
                "--decisions-policies", "--decisions-window"]
VALUES = st.one_of(st.sampled_from(["0", "-1", "1", "1e6", "1e-9", "nan", "inf", "-inf", "1.5",
                                    "hpa", "hpa,hpa", "", ",", "2h:1h", ":", "1e309", "0x10",
                                    "4294967296", "true", "fluid"]),
                   st.text(max_size=8))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(st.sampled_from(REPLAY_FLAGS), VALUES), max_size=5))
def test_any_replay_options_parse_or_are_one_line(
        capsys: pytest.CaptureFixture[str], pairs: list[tuple[str, str]]) -> None:
    from autoscaler.cli import build_parser
    from autoscaler.cli.replay import ReplayCommand

    argv = ["replay"] + [f"{flag}={value}" for flag, value in pairs]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        err = capsys.readouterr().err
        assert exc.code == 2 and err.count("\n") == 1 and err.startswith(
            "autoscaler replay: error: "), err
        return
    try:
        cmd = ReplayCommand.from_args(args)
    except SpecError as exc:
        assert exc.field.startswith("--") and len(str(exc)) <= MAX_MESSAGE_CHARS
        return
    assert 1e-3 <= cmd.time_scale <= 1e3 and 0 < cmd.rate_scale <= 1e3
    assert cmd.cold_start_s is None or 0 <= cmd.cold_start_s <= 3600
    assert cmd.max_replicas is None or cmd.min_replicas <= cmd.max_replicas


def test_kubeconfig_files_are_checked_merged_as_the_client_merges_them(
        tmp_path: Path) -> None:
    from autoscaler.cli.controller import check_kubeconfig

    whole = yaml.safe_load(_kubeconfig())
    # The context in one file, the cluster and user in another: valid once merged.
    first = tmp_path / "a"
    first.write_text(yaml.safe_dump({"contexts": whole["contexts"],
                                     "current-context": "ctx"}))
    second = tmp_path / "b"
    second.write_text(yaml.safe_dump({"clusters": whole["clusters"], "users": whole["users"]}))
    missing = tmp_path / "gone"  # skipped, as the client skips it
    env = {"KUBECONFIG": f"{first}:{missing}:{second}"}
    check_kubeconfig(None, env)
    second.write_text(yaml.safe_dump({"users": whole["users"]}))
    with pytest.raises(SpecError, match="names cluster 'c1', which is not in clusters"):
        check_kubeconfig(None, env)
