"""Eval metrics sent back to the loggers of the run that made the checkpoint."""

import pandas as pd


def test_eval_metrics_reach_the_runs_wandb_run_and_csv_log(tmp_path, monkeypatch):
    import torch

    from imgexp.tracking.run_logging import log_to_run_loggers

    monkeypatch.setenv("WANDB_MODE", "offline")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "csv").mkdir()
    (run / "csv" / "metrics.csv").write_text("epoch,step,val/acc\n0,9,0.5\n1,19,0.75\n")
    loggers = {"csv": {"_target_": "lightning.pytorch.loggers.CSVLogger"},
               "wandb": {"_target_": "lightning.pytorch.loggers.WandbLogger",
                         "project": "imgexp", "mode": "offline"}}
    ckpt = run / "checkpoints" / "best.ckpt"
    torch.save({"imgexp": {"class_names": ["a", "b"], "config": {"model": {}, "logger": loggers},
                           "wandb_run_id": "evaltest1"}, "state_dict": {}}, ckpt)
    done = log_to_run_loggers(ckpt, {"test/acc": 0.875, "test/balanced_acc": 0.5})
    assert done == [str(run / "csv" / "metrics.csv"), "wandb run evaltest1"]
    table = pd.read_csv(run / "csv" / "metrics.csv")
    assert table["val/acc"].tolist()[:2] == [0.5, 0.75]
    assert table.iloc[-1][["step", "test/acc"]].tolist() == [19, 0.875]
    # the offline W&B run resumed under the training run's id holds the new keys
    records = list((run / "wandb").glob("offline-run-*-evaltest1/run-evaltest1.wandb"))
    assert len(records) == 1 and b"test/balanced_acc" in records[0].read_bytes()


def test_eval_metrics_sent_to_the_runs_wandb_print_no_wandb_block(tmp_path, capfd, monkeypatch):
    """imgexp-eval's back-logging printed W&B's banner and ~35-line history/summary block."""
    from imgexp.tracking.run_logging import log_to_wandb

    monkeypatch.delenv("WANDB_SILENT", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    config = {"logger": {"wandb": {"_target_": "imgexp.tracking.wandb_run.WandbLogger",
                                   "project": "imgexp"}}}
    log_to_wandb("evalquiet1", config, {"test/acc": 0.5}, tmp_path)
    out = capfd.readouterr()
    assert "wandb:" not in out.out + out.err
    assert list(tmp_path.glob("wandb/offline-run-*-evalquiet1"))
