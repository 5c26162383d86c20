"""What a Lightning training run is built with: the callbacks (EMA, progressive unfreezing,
progress lines, Optuna pruning) and their instantiation from conf/callbacks and conf/logger."""
