"""Chat templates the tests write out, shared by the files that need them."""

# Gemma 3's, with its system folded into the first user turn, the role `model` and stripped contents
GEMMA3 = ("{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] + "
          "'\n\n' -%}{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = \"\" -%}{%- set "
          "loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}{%- if (message['role'] == "
          "'assistant') -%}{%- set role = \"model\" -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
          "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}{{ message['content'] | "
          "trim }}{{ '<end_of_turn>\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}"
          "{%- endif -%}")


def llama_cpp_corpus() -> dict[str, str]:
    """The chat templates llama.cpp ships (vendor/llama.cpp/models/templates in the llama-cpp-python sdist that
    scripts/setup.sh downloads), read from the archive, by file stem; {} without the sdist."""
    import tarfile
    from pathlib import Path

    from workbench.runtimes.llamacpp.tools import sdist_cache

    archives = sorted(sdist_cache().glob("llama_cpp_python-*.tar.gz"))
    if not archives:
        return {}
    templates = {}
    with tarfile.open(archives[-1]) as tar:
        for member in tar.getmembers():
            if "/vendor/llama.cpp/models/templates/" in member.name and member.name.endswith(".jinja"):
                templates[Path(member.name).stem] = tar.extractfile(member).read().decode("utf-8")
    return templates
