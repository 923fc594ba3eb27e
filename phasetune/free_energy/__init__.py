"""Free-energy routes: coexistence, Frenkel-Ladd, liquid TI, reversible scaling, Gibbs-Helmholtz."""

from phasetune.third_party import quiet_warp_init

quiet_warp_init()  # before torch-sim initialises Warp (see phasetune.third_party)
