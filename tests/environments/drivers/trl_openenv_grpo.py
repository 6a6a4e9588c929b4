"""TRL 1.16's GRPOTrainer trained for one step on the Shop-R1 OpenEnv server: its
``rollout_func`` (TRL's custom-rollout path for environments) opens a session with
OpenEnv's own client per generation, resets it to the row's episode, generates the answer
to the real step with the trainer's own model, and steps the environment with it; the
environment's reward is the trainer's reward.

spec: {"base_url", "tokenizer_dir", "episodes": [ids], "num_generations", "max_new_tokens",
       "output_dir"}
out:  {"played": [{"episode_id", "step_id", "completion", "reward", "components",
       "format_error_reason"}], "global_step", "log": trainer.state.log_history}
"""

from __future__ import annotations

import torch
from datasets import Dataset
from driver_io import run
from shop_r1_openenv import ShopR1Action, ShopR1Env
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from trl import GRPOConfig, GRPOTrainer


def tiny_policy(tokenizer) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))


def main(spec: dict) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer_dir"])
    tokenizer.padding_side = "left"
    played: list[dict] = []

    def rollout_func(prompts: list, trainer: GRPOTrainer) -> dict:
        out: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "logprobs": [],
                                "env_reward": []}
        for prompt in prompts:  # one per generation: TRL repeats each row's prompt
            episode_id = prompt[-1]["content"]
            with ShopR1Env(base_url=spec["base_url"]).sync() as env:
                observation = env.reset(episode_id=episode_id).observation
                prompt_ids = tokenizer.apply_chat_template(
                    observation.prompt, add_generation_prompt=True, tokenize=True,
                    return_dict=False,
                )
                with torch.no_grad():
                    generated = trainer.model.generate(
                        torch.tensor([prompt_ids]), max_new_tokens=spec["max_new_tokens"],
                        do_sample=True, output_logits=True, return_dict_in_generate=True,
                        pad_token_id=tokenizer.pad_token_id,
                    )
                completion_ids = generated.sequences[0, len(prompt_ids):].tolist()
                logprobs = [
                    torch.log_softmax(logits[0].float(), dim=-1)[token].item()
                    for logits, token in zip(generated.logits, completion_ids, strict=False)
                ]
                completion = tokenizer.decode(completion_ids, skip_special_tokens=True)
                result = env.step(ShopR1Action(completion=completion))
            out["prompt_ids"].append(list(prompt_ids))
            out["completion_ids"].append(completion_ids)
            out["logprobs"].append(logprobs)
            out["env_reward"].append(result.reward)
            error = result.observation.format_error
            played.append({
                "episode_id": episode_id, "step_id": result.observation.scored_step_id,
                "completion": completion, "reward": result.reward,
                "score": result.observation.score, "components": result.observation.components,
                "format_error_reason": error and error["reason"],
            })
        return out

    def env_reward(completions, env_reward, **kwargs) -> list[float]:
        """The environment's reward of each rollout (forwarded by TRL from rollout_func)."""
        return list(env_reward)

    generations = spec["num_generations"]
    dataset = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": episode}]} for episode in spec["episodes"]]
    )
    args = GRPOConfig(
        output_dir=spec["output_dir"], per_device_train_batch_size=generations,
        num_generations=generations, max_completion_length=spec["max_new_tokens"], max_steps=1,
        report_to=[], use_cpu=True, bf16=False, save_strategy="no", logging_steps=1,
    )
    trainer = GRPOTrainer(
        model=tiny_policy(tokenizer), reward_funcs=[env_reward], args=args,
        train_dataset=dataset, processing_class=tokenizer, rollout_func=rollout_func,
    )
    trainer.train()
    return {"played": played, "global_step": trainer.state.global_step,
            "log": trainer.state.log_history}


if __name__ == "__main__":
    run(main)
