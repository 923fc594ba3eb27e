"""Free-energy estimators, reweighting, time-series statistics and phase-transition thermodynamics.

Units: energies in eV, temperatures in K, volumes in Å³, pressures in GPa. Δ means phase
(or state) B minus phase (or state) A everywhere.
"""

from phasetune.thermo.bar import (
    BARResult,
    bennett_acceptance_ratio,
    correlated_bennett_acceptance_ratio,
)
from phasetune.thermo.phase_transitions import (
    clausius_clapeyron_slope_K_per_GPa,
    gibbs_helmholtz_delta_g,
    transition_temperature,
)
from phasetune.thermo.reweighting import (
    effective_sample_size,
    free_energy_perturbation,
    free_energy_perturbation_error,
    relative_effective_sample_size,
    reweighted_average,
    reweighting_weights,
)
from phasetune.thermo.statistics import (
    DRIFT_BIAS_PER_HALVES_DIFFERENCE,
    DRIFT_SIGNIFICANCE,
    autocorrelation_function,
    blocking_standard_error,
    drift_inflated_error,
    effective_number_of_samples,
    integrated_autocorrelation_time,
    mean_and_drift_aware_error,
    series_inefficiency,
    standard_error_of_mean,
    statistical_inefficiency,
)

__all__ = [
    "DRIFT_BIAS_PER_HALVES_DIFFERENCE",
    "DRIFT_SIGNIFICANCE",
    "BARResult",
    "autocorrelation_function",
    "bennett_acceptance_ratio",
    "blocking_standard_error",
    "clausius_clapeyron_slope_K_per_GPa",
    "correlated_bennett_acceptance_ratio",
    "drift_inflated_error",
    "effective_number_of_samples",
    "effective_sample_size",
    "free_energy_perturbation",
    "free_energy_perturbation_error",
    "gibbs_helmholtz_delta_g",
    "integrated_autocorrelation_time",
    "mean_and_drift_aware_error",
    "relative_effective_sample_size",
    "reweighted_average",
    "reweighting_weights",
    "series_inefficiency",
    "standard_error_of_mean",
    "statistical_inefficiency",
    "transition_temperature",
]
