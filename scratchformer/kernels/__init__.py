"""Tuned kernels, called by name from the core and the optimizers, each tested equal to
its plain formula: ``rows`` (cache-blocked row kernels and BLAS reductions), ``qkv``
(the fused q/k/v projections of attention), ``blocked`` (the optimizers' blocked update)."""
