"""Offline always. Tiny real models are built here; the default model is materialized once per session, and what
several test files need of it (llama.cpp's converter, the default model's GGUF export) is made once per session, on
first use, so that a single file and the whole suite build it the same way."""

import json
import os
import shutil
import subprocess

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config):
    # WB_HOME caches the default model (about a minute to convert from its GGUF): share one per machine
    # unless the caller chose one. The store is always per test.
    os.environ.setdefault("WB_HOME", str(Path.home() / ".cache" / "ckpt-workbench-tests"))
    # A shell starts a background job (`cmd &`, nohup) with SIGINT ignored, and children inherit that: the tests
    # that press Ctrl-C on a `wb` child would see it ignored. The tests' process takes Python's own handler.
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory):
    """`tmp_path_factory.mktemp` for one test file's shared fixtures, its folders removed when the file is done.
    pytest keeps factory folders to the end of the session: a whole run wrote about 20 GB (models, GGUFs,
    merged checkpoints), enough to fill a CI runner's disk."""
    made = []

    def mktemp(name):
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield mktemp
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    path = tmp_path / "store"
    monkeypatch.setenv("WB_STORE", str(path))
    return path


@pytest.fixture(scope="session")
def data_dir():
    """The real MMLU/GSM8K mirror beside the project (../shared/data), as a user's local mirror."""
    path = Path(os.environ.get("WB_DATA_DIR") or SHARED_DATA)
    if not (path / "mmlu").is_dir():
        pytest.skip(f"needs the benchmark mirror at {path} (set WB_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def default_ckpt():
    from workbench.checkpoints.resolve import resolve_checkpoint

    return resolve_checkpoint("default")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, default_ckpt):
    """A 2-layer Llama with random weights and the default model's real tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(str(default_ckpt.path))
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def go_render(tmp_path_factory):
    """Go's text/template (Ollama's engine): the stdlib-only program in exporters/ollama/render, built once."""
    go = shutil.which("go")
    if not go:
        pytest.skip("needs Go (Debian golang-go; scripts/test.sh installs it when run as root) to cross-check "
                    "the Python Go-template renderer against Go's text/template")
    out = tmp_path_factory.mktemp("gorender")
    env = {"HOME": str(out), "GOCACHE": str(out / "cache"), "GOPATH": str(out / "gopath"), "GOFLAGS": "-mod=mod",
           "GO111MODULE": "off", "PATH": "/usr/bin:/bin"}
    main = REPO / "exporters" / "ollama" / "render" / "main.go"
    subprocess.run([go, "build", "-o", str(out / "render"), str(main)], check=True, env=env, capture_output=True)

    def render(template: str, values: dict) -> str:
        proc = subprocess.run([str(out / "render")], input=json.dumps({"template": template, "values": values}),
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(proc.stderr.strip())
        return proc.stdout

    return render


@pytest.fixture(scope="session")
def llama_tools():
    """llama.cpp's converter for the installed llama-cpp-python, extracted once into WB_HOME (from
    WB_LLAMA_CPP_SDIST, or downloaded from PyPI the first time)."""
    from workbench.runtimes.llamacpp.tools import locate_tools

    return locate_tools()


@pytest.fixture(scope="session")
def default_export(default_ckpt, tmp_path_factory, llama_tools):
    """The default model exported to GGUF by llama.cpp's converter and quantizer, as the demo exports it: f16 (kept),
    q8_0 and q4_k_m, with their Ollama bundles. quant -> artifact. Read only: tests copy what they change."""
    import time

    from workbench.export.gguf.exporter import export_gguf

    out = tmp_path_factory.mktemp("default-gguf") / "out"
    started = time.monotonic()
    artifacts = export_gguf(default_ckpt, out, ["q8_0", "q4_k_m"], keep_f16=True)
    seconds = time.monotonic() - started
    print(f"\ndefault model export (f16 + q8_0 + q4_k_m): {seconds:.1f} s")
    for art in artifacts:
        print(f"  {art.path.name}: {art.extra['size_bytes']:,} bytes, tensor types {art.extra['tensor_types']}")
    return {a.parent["quant"]: a for a in artifacts}


def pytest_addoption(parser):
    parser.addoption("--fast", action="store_true",
                     help="the fast tier (a few minutes): leave out the tests marked slow. Should every selected test "
                          "be slow (a slow file named alone), they run: --fast never makes a run of no tests")


# The files that take minutes, longest first (measured on a 2-core machine). Under pytest-xdist (`-n 2 --dist
# loadfile --no-loadscope-reorder`, scripts/test.sh) files are handed to the workers in collection order, so the
# long ones go first and the short ones fill in around them; without xdist the order is left as collected.
LONGEST_FILES = [
    "test_gemma_e2e.py", "test_demo_e2e.py", "test_train_evals.py", "test_base_model.py", "test_export_gguf.py",
    "test_train_methods.py",
    "test_api_doc.py", "test_train_resume.py", "test_eval_matrix.py", "test_export_quant.py", "test_faults.py",
    "test_sweep.py", "test_harness_cli.py", "test_endpoint.py", "test_serve.py", "test_vocab_models.py",
    "test_judge_local.py", "test_gguf_batched.py",
    "test_alpaca_eval.py", "test_ifeval.py", "test_review.py", "test_mt_bench.py", "test_review_browser.py",
]


# Tests that take more than a couple of seconds on a 2-core machine without saying so with @pytest.mark.slow
# (measured: most start `wb` in a subprocess, a server, or llama.cpp's converter): marked slow here, so --fast
# leaves them out. file -> test names (a name without [params] covers all of its cases).
SLOW_TESTS = {
    "test_cli.py": ["test_eval_data_dir_without_mmlu_is_one_line_exit_3",
        "test_gate_passes_exit_0_and_fails_exit_1_with_reports"],
    "test_dashboard.py": ["test_every_page_works_on_hundreds_of_runs[leaderboard]",
        "test_wb_dashboard_serves_on_loopback"],
    "test_dashboard_browser.py": ["test_compare_view_shows_the_numbers_wb_compare_prints"],
    "test_data_check.py": ["test_duplicates_lengths_and_rendered_samples",
        "test_train_refuses_contaminated_rows_before_any_model_loads"],
    "test_export_gguf.py": ["test_adapter_is_merged_then_exported", "test_adapter_only_gguf_on_its_base",
        "test_bad_input_through_the_cli[corrupt safetensors]", "test_bad_input_through_the_cli[no Ollama template]",
        "test_bad_input_through_the_cli[unsupported architecture]", "test_converter_failure_leaves_nothing",
        "test_export_verb_json", "test_interrupt_during_quantize_leaves_nothing",
        "test_no_ollama_exports_without_the_bundle", "test_other_families_convert_quantize_verify_bundle",
        "test_tiny_model_export_q8_0"],
    "test_export_quant.py": ["test_awq_with_user_calibration_reloads_and_measures",
        "test_gptq_cli_produces_reloads_measures_and_records", "test_options_of_other_formats_are_refused_not_ignored"],
    "test_faults.py": ["test_converter_dies_with_wb", "test_failed_converter_log_is_kept_in_the_run_folder",
        "test_full_disk_leaves_the_store_consistent", "test_json_is_one_object_and_hf_home_is_untouched[eval]",
        "test_json_is_one_object_and_hf_home_is_untouched[merge]",
        "test_json_is_one_object_and_hf_home_is_untouched[train]", "test_killed_run_reads_interrupted",
        "test_local_judge_server_dies_with_wb"],
    "test_gate.py": ["test_reruns_of_one_model_rarely_trip_where_a_point_rule_would"],
    "test_gguf_batched.py": ["test_batched_follows_stop_strings_and_max_tokens",
        "test_batched_greedy_answers_equal_one_at_a_time", "test_gguf_eval_path_is_batched_with_the_same_scores",
        "test_lm_eval_generate_until_decodes_greedy_requests_together",
        "test_loglikelihood_reuses_shared_prefixes_with_the_same_logprobs",
        "test_shared_prompt_prefix_is_evaluated_once_with_the_same_answers"],
    "test_harness_cli.py": ["test_adapter_base_mismatch", "test_adapter_on_given_base_runs",
        "test_cuda_device_without_gpu_is_exit_4", "test_kill_9_then_rerun_recomputes_only_unfinished",
        "test_mirror_missing_split", "test_mirror_wrong_schema", "test_settings_recorded_and_rerun_served_from_cache",
        "test_suite_with_its_own_task_folder", "test_unknown_task", "test_user_task_folder_runs_unchanged",
        "test_vllm_backend_missing_is_exit_4"],
    "test_harness_llamacpp.py": ["test_generation_scored_by_lm_eval", "test_loglikelihood_matches_transformers"],
    "test_hostile_edges.py": ["test_doctor_reports_an_extra_that_fails_to_import_as_broken"],
    "test_hostile_input.py": ["test_eval_refuses_bad_checkpoint[adapter-base-is-gguf]",
        "test_eval_refuses_bad_input[baseline-neither-run-nor-path]"],
    "test_hostile_judge.py": ["test_key_echoed_in_a_valid_verdict_is_never_stored"],
    "test_hostile_secrets.py": ["test_recipe_and_suite_names_with_rich_markup_are_printed_as_text",
        "test_url_credentials_and_tokens_are_sent_but_never_stored"],
    "test_hostile_verbs.py": ["test_merge_refuses_bad_input[merge-adapter-config-corrupt]"],
    "test_hub.py": ["test_eval_of_a_hub_id_records_commit_and_sha"],
    "test_judge.py": ["test_api_key_never_stored_or_logged", "test_cli_run_with_judge_faults_finishes_exit_0",
        "test_faults_are_retried_then_fail_and_good_answers_are_cached",
        "test_wb_judge_regrades_a_recorded_run_pairwise"],
    "test_judge_local.py": ["test_local_server_grades_with_a_schema_and_stops_on_ctrl_c"],
    "test_merge_multi.py": ["test_linear_with_weights_one_zero_is_adapter_a_alone",
        "test_mergekit_slerp_loads_and_evals"],
    "test_merge_qlora.py": ["test_dequantized_merge_is_closer_to_the_4bit_adapter_than_fp",
        "test_streaming_dequantized_equals_in_memory"],
    "test_merge_stream.py": ["test_streaming_equals_peft_merge_on_the_default_model_in_four_shards"],
    "test_ollama_corpus.py": ["test_corpus_templates_round_trip_or_are_refused_by_name"],
    "test_progress_logs.py": ["test_lm_eval_bars_are_held_to_the_log_pace", "test_progress_interval_is_configurable",
        "test_quiet_prints_only_the_result", "test_task_eval_progress_off_a_terminal_is_a_line_per_task",
        "test_unreachable_hub_is_decided_by_one_probe"],
    "test_rough_edges.py": ["test_matrix_reuses_identical_runs_and_says_so",
        "test_merge_prints_no_library_noise_unless_verbose"],
    "test_setup_portable.py": ["test_variant_choice_is_measured_applied_and_reapplied"],
    "test_tracking.py": ["test_a_tracker_wb_has_no_extra_for_is_exit_4_naming_what_to_install[trackio]",
        "test_an_mlflow_server_that_does_not_answer_is_exit_4_before_the_model_loads",
        "test_eval_run_logged_to_a_real_mlflow_server", "test_mlflow_uri_credentials_never_reach_the_manifest",
        "test_train_reports_to_mlflow_and_tensorboard"],
    "test_train_evals.py": ["test_a_forgetting_gate_stops_training_and_says_why",
        "test_a_resumed_run_keeps_the_base_measurement_and_the_step_chain",
        "test_an_eval_during_training_suite_that_does_not_load_is_exit_3_before_the_model_loads",
        "test_evals_during_training_are_runs_linked_by_step_and_match_wb_eval",
        "test_training_with_evals_takes_the_same_steps_as_without"],
    "test_train_methods.py": ["test_a_trl_config_value_error_is_one_line_after_the_heavy_imports"],
    "test_train_resume.py": ["test_a_half_written_checkpoint_is_never_resumed_from",
        "test_kill_9_then_resume_ends_where_an_uninterrupted_run_ends",
        "test_resume_refuses_a_changed_recipe_and_a_run_still_training"],
    "test_vllm_backend.py": ["test_a_vllm_under_another_distribution_name_is_one_line_exit_4"],
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = SLOW_TESTS.get(item.path.name, ())
        if item.name in names or getattr(item, "originalname", item.name) in names:
            item.add_marker(pytest.mark.slow)
    if config.getoption("--fast"):
        fast = [item for item in items if item.get_closest_marker("slow") is None]
        if fast:
            config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("slow")])
            items[:] = fast
    if hasattr(config, "workerinput"):  # an xdist worker (where numprocesses reads None)
        rank = {name: i for i, name in enumerate(LONGEST_FILES)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order


@pytest.fixture(autouse=True)
def _ctrl_c_reaches_children(request):
    """Tests send Ctrl-C to `wb` children, which inherit this process's SIGINT disposition (pytest_configure
    makes it Python's handler): a library run in-process that left SIGINT ignored would make them ignore it too.
    Fail the test that left it so, and put Python's handler back."""
    import signal

    yield
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        left = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        pytest.fail(f"{request.node.nodeid} left SIGINT's handler as {left!r}", pytrace=False)
