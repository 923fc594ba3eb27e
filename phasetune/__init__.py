"""phasetune: fine-tune interatomic potentials to experimental phase-transition temperatures."""

# mace must be imported before e3nn (it sets process-wide torch.load defaults); importing
# torch_sim here keeps that order for every phasetune entry point.
__version__ = "0.1.0"
