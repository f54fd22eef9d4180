"""The reference forward pass and back-propagation, written once against ``xp``.

Every backend is tested against this code; the ``numpy`` backend *is* this code on
NumPy arrays, and it runs unchanged on any array-API namespace (CuPy included). The
exact Hessians (:mod:`nnkit.objective.hessian`) differentiate this same forward pass.

Shapes: ``theta (R, P)``; data ``X (n, d)`` shared by all R networks (full batch) or
``X (R, n, d)`` one batch per network (minibatch SGD); targets ``y (n,)`` or ``(R, n)``.
"""

from __future__ import annotations

from array_api_compat import array_namespace

from .base import Kernel


class ReferenceKernel(Kernel):
    """Value, gradient and predictions of a batch of networks of one ``model``.

    Subclasses may replace the two products with the data, :meth:`product` and
    :meth:`weight_grad` (the ``cupy`` backend does them as one large GEMM), and keep
    the rest.
    """

    def __init__(self, model, spec, xp=None):
        self.model = model
        self.spec = spec
        self.layout = model.layout
        self._xp = xp
        #: ``activations[l]`` is the record of hidden layer ``l`` (1-based)
        self.activations = [None] + [model.activation(l) for l in range(1, model.layout.depth + 1)]
        self._mask = spec.penalty_mask(model.layout)
        self._mask_cache = {}

    def namespace(self, theta):
        """The array namespace to compute ``theta``'s objective in."""
        return self._xp if self._xp is not None else array_namespace(theta)

    def forward(self, xp, theta, X):
        """Pre-activations ``Z[l]``, activations ``H[l]`` (``H[0] = X``; index 0 of ``Z``
        is None) of every hidden layer, and the outputs ``f (R, n)``."""
        lay = self.layout
        H, Z = [X], [None]
        for layer in range(1, lay.depth + 1):
            z = self.product(xp, H[-1], lay.weights(theta, layer))
            b = lay.biases(theta, layer)
            if b is not None:
                z = z + b[:, None, :]
            Z.append(z)
            H.append(self.activations[layer].value(xp, z))
        if lay.output_trained:
            f = xp.matmul(H[-1], lay.view(theta, "W_out")[:, :, None])[..., 0]
        else:
            f = lay.output_value * xp.sum(H[-1], axis=-1)
        if lay.output_bias:
            f = f + lay.view(theta, "b_out")[:, None]
        return Z, H, f

    def product(self, xp, H, W):
        """``H (n, a) or (R, n, a) @ W (R, a, b) -> (R, n, b)``."""
        return xp.matmul(H, W)

    def weight_grad(self, xp, H, dZ):
        """``H^T @ dZ``: ``H (n, a) or (R, n, a)``, ``dZ (R, n, b) -> (R, a, b)``."""
        return xp.matmul(xp.matrix_transpose(H), dZ)

    def predict(self, theta, X):
        xp = self.namespace(theta)
        return self.forward(xp, theta, X)[2]

    def value(self, theta, X, y):
        xp = self.namespace(theta)
        loss, _ = self.spec.data_loss(xp, self.predict(theta, X), y)
        if self.spec.has_penalty():
            loss = loss + self.spec.penalty(xp, theta, self.penalty_mask(xp, theta))[0]
        return loss

    def penalty_mask(self, xp, theta):
        """The spec's penalty mask ``(P,)`` as an array of ``theta``'s kind and dtype."""
        key = (type(theta), theta.dtype)
        if key not in self._mask_cache:
            self._mask_cache[key] = xp.asarray(self._mask, dtype=theta.dtype)
        return self._mask_cache[key]

    def value_and_grad(self, theta, X, y):
        xp = self.namespace(theta)
        lay = self.layout
        Z, H, f = self.forward(xp, theta, X)
        loss, g = self.spec.data_loss(xp, f, y)
        grads = {}
        if lay.output_trained:
            grads["W_out"] = xp.sum(H[-1] * g[:, :, None], axis=1)
            dH = g[:, :, None] * lay.view(theta, "W_out")[:, None, :]
        else:
            dH = lay.output_value * xp.broadcast_to(g[:, :, None], H[-1].shape)
        if lay.output_bias:
            grads["b_out"] = xp.sum(g, axis=1)
        for layer in range(lay.depth, 0, -1):
            dZ = dH * self.activations[layer].derivative(xp, Z[layer], H[layer])
            grads[f"W{layer}"] = self.weight_grad(xp, H[layer - 1], dZ)
            if lay.bias[layer - 1]:
                grads[f"b{layer}"] = xp.sum(dZ, axis=1)
            if layer > 1:
                dH = xp.matmul(dZ, xp.matrix_transpose(lay.weights(theta, layer)))
        R = theta.shape[0]
        grad = xp.concat([xp.reshape(grads[b.name], (R, b.size)) for b in lay.blocks], axis=1)
        if self.spec.has_penalty():
            value, pgrad = self.spec.penalty(xp, theta, self.penalty_mask(xp, theta))
            loss, grad = loss + value, grad + pgrad
        return loss, grad
